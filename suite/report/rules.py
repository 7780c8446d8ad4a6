"""Rule kinds the claim YAMLs name (`rule:`): pure functions (spec, groups, kernel rows, limits) ->
[Outcome]. A rule knows how to compare; what to select, the metric and the threshold are the YAML's.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from suite.report.curves import knee, sparsity_curves
from suite.report.intervals import delta
from suite.report.judge import (
    FAILS,
    FLOAT_TOL,
    HOLDS,
    INCONCLUSIVE,
    NOT_RUN,
    Limits,
    Need,
    Outcome,
    at_chance,
    combine,
    desc,
    evidence,
    judge_pair,
    largest_budget,
    needs_of,
    next_budget,
    precision_needs,
    still_gaining,
    summary,
    top_pairs,
)
from suite.report.records import KEY_FIELDS, Group, baseline_for

# spec: a claims.ClaimSpec (not imported: claims imports this module)
RULES: dict[str, Callable[[Any, Sequence[Group], Sequence[dict], Limits], list[Outcome]]] = {}


def rule(fn):
    RULES[fn.__name__] = fn
    return fn


# ------------------------------------------------------------------ filters (the YAML's `cells:`)

def _matches(g: Group, key: str, want: Any) -> bool:
    if key == "variant":  # "" = the default recipe; ["k=v", ...] = has any of these options
        items = {f"{k}={v}" for k, v in g.variant_items}
        return not items if want in ("", None) else bool(items & set(want if isinstance(want, list) else [want]))
    if key == "ablated":  # none = every technique on; [switch, ...] = any of these switched off
        if want in ("none", "", None, []):
            return not g.ablated
        return bool(set(g.ablated) & set(want if isinstance(want, list) else [want]))
    value = getattr(g, key) if key in KEY_FIELDS or hasattr(type(g.first), key) else g.mean(key)
    if isinstance(want, dict):
        lo, hi = want.get("min", -math.inf), want.get("max", math.inf)
        return value is not None and lo - FLOAT_TOL <= float(value) <= hi + FLOAT_TOL
    wants = want if isinstance(want, list) else [want]
    for w in wants:
        if isinstance(w, (int, float)) and not isinstance(w, bool) and isinstance(value, (int, float)):
            if abs(float(value) - float(w)) < 1e-6:
                return True
        elif str(value) == str(w):
            return True
    return False


def select(groups: Sequence[Group], cells: dict, exclude: dict | None = None) -> list[Group]:
    out = [g for g in groups if all(_matches(g, k, v) for k, v in cells.items())]
    if exclude:
        out = [g for g in out if not all(_matches(g, k, v) for k, v in exclude.items())]
    return out


def _partner(g: Group, groups: Sequence[Group], changes: dict) -> Group | None:
    """The group equal to `g` in every key field but `changes` (field -> wanted value(s)), any variant,
    trained for the same optimizer steps (else at the same budget label)."""
    free = {"variant", "budget", "paper"}

    def ok(h: Group) -> bool:
        for f in KEY_FIELDS:
            if f in changes:
                wants = changes[f] if isinstance(changes[f], list) else [changes[f]]
                if str(getattr(h, f)) not in [str(w) for w in wants]:
                    return False
            elif f not in free and getattr(h, f) != getattr(g, f):
                return False
        return True
    cands = [h for h in groups if h is not g and ok(h)]
    pool = [h for h in cands if g.steps and h.steps == g.steps] or [h for h in cands if h.budget == g.budget]
    return min(pool, key=lambda h: (h.variant_items != g.variant_items, h.paper != g.paper), default=None)


# ------------------------------------------------------------------ rules

@rule
def within_dense(spec, groups, kernels, limits) -> list[Outcome]:
    """Every selected cell (at its largest budget) within the threshold of its dense baseline."""
    sel = largest_budget(select(groups, spec.cells, spec.exclude), groups)
    pairs = [(g, b) for g in sel if (b := baseline_for(g, groups)) is not None]
    what = spec.options.get("what", "cells")
    if not pairs:
        extra = f" ({len(sel)} {what} recorded, no dense baseline)" if sel else ""
        return [Outcome(NOT_RUN, f"no {what} with a dense baseline{extra}")]

    def line(b: Group) -> float:  # the lowest Δ dense (points) the claim allows
        return -spec.threshold * b.mean() if spec.relative else -spec.threshold

    res = [judge_pair(g, b, groups, line(b), limits, strict=spec.strict, converged=spec.converged)
           for g, b in pairs]
    worst = min(res, key=lambda r: r.value)
    out = [Outcome(combine(res), summary(res, what), evidence(res),
                   f"Δ dense {worst.interval.text()} ({desc(worst.cell)})", spec.options.get("at", "paper's scale"),
                   needs_of(res))]
    if spec.knee:
        out.append(knee_outcome(spec, groups, limits))
    return out


def knee_outcome(spec, groups: Sequence[Group], limits: Limits) -> Outcome:
    """The claim at the model's own knee: the highest sparsity within the threshold of dense, per task
    (best method), from the curves the YAML's `options.curve` selects."""
    curves = sparsity_curves(select(groups, spec.options.get("curve", {})), groups)
    if not curves:
        return Outcome(NOT_RUN, "no sparsity curve (two or more sparsity levels with a dense baseline)", at="knee")
    per_task: dict[tuple, list] = defaultdict(list)
    ev: list[Group] = []
    needs: list[Need] = []
    for curve in curves.values():
        base = curve[0][1]
        thr = spec.threshold * base.mean() if spec.relative else spec.threshold
        k = knee(curve, thr)
        status = HOLDS if k.value > 0 else FAILS
        note, why = "", ""
        if at_chance(base, limits):
            status, note, why = INCONCLUSIVE, f"dense at chance ({base.mean():.2f})", "dense at chance"
        else:
            gaining, gnote = still_gaining(base, groups, limits) if spec.converged else (False, "")
            if gaining:
                status, note, why = INCONCLUSIVE, f"dense not converged ({gnote})", "dense not converged"
            elif gaining is None:
                status, note, why = INCONCLUSIVE, gnote, "no budget twin"
        if why:
            want = next_budget(base, groups)
            needs += [Need("budget", g.cell_ids[0], g.budget_factor * want / base.budget_factor,
                           text=f"{desc(g)} at {g.budget_factor * want / base.budget_factor:g}x ({why})")
                      for g in [base] + [x for x, _ in curve] if all(n.cell_id != g.cell_ids[0] for n in needs)]
        g0 = curve[0][0]
        per_task[(g0.model_label, g0.task)].append((k, status, note, g0))
        ev += [x for pair in curve for x in pair if all(x is not e for e in ev)]
    best = {t: max(v, key=lambda x: (x[1] != INCONCLUSIVE, x[0].value)) for t, v in per_task.items()}
    statuses = [s for _, s, _, _ in best.values()]
    status = FAILS if FAILS in statuses else INCONCLUSIVE if INCONCLUSIVE in statuses else HOLDS
    parts = [f"{task} {g.sparsity_method}/{g.distill_method} @{g.budget}: {k.text()}{' (' + n + ')' if n else ''}"
             for (model, task), (k, s, n, g) in sorted(best.items())]
    lowest = min(k.value for k, *_ in best.values())
    models = sorted({m for m, _ in best})
    at = f"knee on {', '.join(models)}: {lowest * 100:.0f}%" if status == HOLDS else "knee"
    thr = f"{spec.threshold * 100:g}% (relative)" if spec.relative else f"{spec.threshold:g} pt"
    reason = f"highest sparsity within {thr} of dense, interpolated (seeds' spread): " + "; ".join(parts)
    return Outcome(status, reason, ev, ", ".join(f"{t}: {k.text()}" for (_, t), (k, *_r) in sorted(best.items())), at,
                   needs if status == INCONCLUSIVE else [])


@rule
def twin(spec, groups, kernels, limits) -> list[Outcome]:
    """Each selected cell against its twin with `options.twin` changed (e.g. the fp32 twin of a QAT cell):
    the cell may lose at most the threshold."""
    sel = largest_budget(select(groups, spec.cells, spec.exclude), groups)
    changes = spec.options.get("twin", {})
    pairs = [(g, t) for g in sel if (t := _partner(g, groups, changes)) is not None]
    if not pairs:
        return [Outcome(NOT_RUN, f"no {spec.options.get('what', 'cells')} with a twin ({changes})")]
    res = [judge_pair(g, t, groups, -spec.threshold, limits, strict=spec.strict,
                      reference=lambda h: _partner(h, groups, changes), converged=spec.converged)
           for g, t in pairs]
    worst = min(res, key=lambda r: r.value)
    return [Outcome(combine(res), summary(res, "pairs"), evidence(res), f"{worst.interval.text()} vs twin",
                    needs=needs_of(res))]


def busy_note(selected) -> str:
    """'; N cells timed on a busy machine left out' (their latencies are no evidence), or ''."""
    n = len({id(c) for g in selected for c in g.cells if c.timed_busy})
    return f"; {n} cell{'s' * (n != 1)} timed on a busy machine left out" if n else ""


@rule
def latency_ratio(spec, groups, kernels, limits) -> list[Outcome]:
    """fp32 latency / best low-bit latency >= threshold for every selected cell with latencies; without
    them, the kernel bench (median over shapes of the best `options.kernel_backends` speedup). Cells the
    latency stage timed (apart from training, on an idle machine) are judged on its ratio's interval over
    rounds instead: holds when its lower bound reaches the threshold, fails when its upper bound is below."""
    staged = stage_ratio_outcome(spec, select(groups, spec.cells, spec.exclude), "sparq_vs_torch_fp32")
    if staged is not None:
        return [staged]
    ratios = []
    for g in select(groups, spec.cells, spec.exclude):
        lat = g.latency()
        low = min((v for k, v in lat.items() if "fp32" not in k), default=math.nan)
        base = baseline_for(g, groups)
        fp32 = min((v for k, v in {**(base.latency() if base else {}), **lat}.items() if "fp32" in k), default=math.nan)
        if math.isfinite(low) and math.isfinite(fp32) and low > 0:
            ratios.append((fp32 / low, g, base))
    if ratios:
        lo = min(ratios, key=lambda r: r[0])
        ev = [x for _, g, b in ratios for x in (g, b) if x is not None]
        text = f"{min(r for r, *_ in ratios):.2f}x-{max(r for r, *_ in ratios):.2f}x"
        busy = busy_note(select(groups, spec.cells, spec.exclude))
        return [Outcome(HOLDS if lo[0] >= spec.threshold else FAILS,
                        f"{len(ratios)} cells; fp32 / low-bit latency {text} (lowest: {desc(lo[1])}){busy}", ev, text)]
    best: dict[tuple, float] = {}
    prefixes = tuple(spec.options.get("kernel_backends", []))
    for row in kernels:
        b, s = str(row.get("backend", "")), row.get("speedup_vs_fp32")
        if prefixes and b.startswith(prefixes) and s is not None and math.isfinite(s):
            shape = (row.get("machine"), row.get("k"), row.get("n"), row.get("m"), row.get("model"),
                     row.get("batch"))
            best[shape] = max(best.get(shape, 0.0), s)
    if not best:
        return [Outcome(NOT_RUN, "no latency_ms_* on the selected cells and no kernel bench rows")]
    med = statistics.median(best.values())
    return [Outcome(HOLDS if med >= spec.threshold else FAILS,
                    f"kernel bench: best int8 backend {med:.2f}x over torch fp32 (median of {len(best)} shapes; "
                    f"{min(best.values()):.2f}x-{max(best.values()):.2f}x)", [], f"{med:.2f}x")]


def stage_ratio_outcome(spec, selected: Sequence[Group], name: str) -> Outcome | None:
    """The threshold rule on the latency stage's ratio `name` of each selected cell; None if none was timed."""
    timed = [(g, c.stage_ratio(name)) for g in selected for c in g.cells[:1] if c.stage_ratio(name)]
    if not timed:
        return None
    texts = [f"{desc(g)} {r['median']:.2f}x [{r['lo']:.2f}, {r['hi']:.2f}] ({r.get('cpu_model') or '?'}, "
             f"{r.get('kernel_path') or '?'}, {r.get('threads') or '?'} threads)" for g, r in timed]
    if all(r["lo"] >= spec.threshold - FLOAT_TOL for _, r in timed):
        status = HOLDS
    elif any(r["hi"] < spec.threshold - FLOAT_TOL for _, r in timed):
        status = FAILS
    else:
        status = INCONCLUSIVE
    worst = min(timed, key=lambda x: x[1]["median"])[1]
    needs = [Need("unavailable", text="more timing rounds of the latency stage (python -m suite.latency --rounds)")] \
        if status == INCONCLUSIVE else []
    return Outcome(status, f"latency stage, batch 1, {name} (median [95% interval over rounds]): " + "; ".join(texts),
                   [g for g, _ in timed], f"{worst['median']:.2f}x [{worst['lo']:.2f}, {worst['hi']:.2f}]",
                   needs=needs)


def _variant_value(g: Group, key: str, default: str) -> str:
    return dict(g.variant_items).get(key, default)


@rule
def spread(spec, groups, kernels, limits) -> list[Outcome]:
    """Cells equal but for one option (`options.key`): the option matters where two of its values differ by
    more than the threshold (the interval of their difference clears it); it does not where every
    difference's interval lies within +-threshold."""
    key, default = spec.options["key"], spec.options.get("default", "default")
    clusters: dict[tuple, list[Group]] = defaultdict(list)
    for g in select(groups, spec.cells, spec.exclude):
        rest = tuple((k, v) for k, v in g.variant_items if k != key)
        clusters[g.config_key[:-1] + (g.task, rest)].append(g)
    comps = [gs for gs in clusters.values() if len({_variant_value(g, key, default) for g in gs}) >= 2]
    if not comps:
        return [Outcome(NOT_RUN, f"no cells differing only in {key}")]
    parts, passed, failed, needs = [], 0, 0, []
    for gs in comps:
        base = baseline_for(gs[0], groups)
        if base is not None and at_chance(base, limits):
            parts.append(f"{gs[0].task}: dense at chance")
            needs += [Need("budget", g.cell_ids[0], next_budget(g, groups), text=f"{desc(g)} at a larger budget")
                      for g in gs]
            continue
        # every pair of options: their difference's interval against +-threshold
        ivs = [(a, b, delta(a, b)) for i, a in enumerate(gs) for b in gs[i + 1:]]
        apart = [(a, b, iv) for a, b, iv in ivs if iv.lo > spec.threshold or iv.hi < -spec.threshold]
        alike = all(-spec.threshold <= iv.lo and iv.hi <= spec.threshold for _, _, iv in ivs)
        passed += bool(apart)
        failed += not apart and alike
        a, b, iv = max(apart or ivs, key=lambda x: abs(x[2].value))
        label = lambda g: _variant_value(g, key, default)  # noqa: E731
        parts.append(f"{gs[0].model_label}/{gs[0].task}: {label(a)} - {label(b)} {iv.text()} (line ±{spec.threshold:g}; "
                     + ", ".join(f"{label(g)} {g.mean():.2f}" for g in gs) + ")")
        if not apart and not alike:
            _, more = precision_needs(a, b, iv, spec.threshold if iv.value >= 0 else -spec.threshold)
            needs += more
    status = HOLDS if passed else FAILS if failed == len(comps) else INCONCLUSIVE
    return [Outcome(status, "; ".join(parts), [g for gs in comps for g in gs],
                    f"{passed}/{len(comps)} comparisons with options apart", needs=needs)]


@rule
def zeros_kept(spec, groups, kernels, limits) -> list[Outcome]:
    """In every selected cell the metric (zeros after quantization) >= the pruning target - threshold,
    and any *pruned_nonzero* metric is 0."""
    sel = select(groups, spec.cells, spec.exclude)
    judged = [g for g in sel if g.values(spec.metric)]
    if not judged:
        return [Outcome(NOT_RUN, f"no selected cells with {spec.metric} recorded ({len(sel)} selected)")]
    bad = []
    for g in judged:
        nonzero = [v for c in g.cells for k, v in c.metrics.items() if "pruned_nonzero" in k and math.isfinite(v)]
        if min(g.values(spec.metric)) < g.sparsity_target - spec.threshold or any(v > 0 for v in nonzero):
            bad.append(g)
    worst = min(judged, key=lambda g: min(g.values(spec.metric)) - g.sparsity_target)
    detail = f"{len(judged) - len(bad)}/{len(judged)} sparse + quantized groups keep their zeros"
    if bad:
        detail += f"; e.g. {desc(bad[0])}: {min(bad[0].values(spec.metric)):.4f} < target {bad[0].sparsity_target:g}"
    return [Outcome(FAILS if bad else HOLDS, detail, judged,
                    f"min {spec.metric} - target {min(worst.values(spec.metric)) - worst.sparsity_target:+.4f}")]


@rule
def ablation(spec, groups, kernels, limits) -> list[Outcome]:
    """Cells equal but for one technique switched off (the record's `ablated`, from the method class;
    `options.techniques` limits which): the full cell minus the ablated one >= -threshold per pair."""
    techniques = set(spec.options.get("techniques", []))
    pool = select(groups, spec.cells, spec.exclude)
    clusters: dict[tuple, list[Group]] = defaultdict(list)
    for g in pool:
        clusters[g.config_key[:-1] + (g.task,)].append(g)
    pairs = []
    for gs in clusters.values():
        for full in gs:
            for abl in gs:
                extra = set(abl.ablated) - set(full.ablated)
                if set(full.ablated) < set(abl.ablated) and len(extra) == 1 and extra <= techniques:
                    pairs.append((extra.pop(), full, abl))
    if not pairs:
        return [Outcome(NOT_RUN, "no ablation pairs (cells equal but for one technique switched off)")]
    res = [judge_pair(full, abl, groups, -spec.threshold, limits, strict=spec.strict, converged=spec.converged,
                      anchor=full)
           for _, full, abl in pairs]
    effects: dict[str, list] = defaultdict(list)
    for (k, _, _), r in zip(pairs, res, strict=True):
        effects[k].append(r)
    ours = "; ".join(f"{k}: full - ablated {', '.join(r.interval.text() for r in v)}" for k, v in sorted(effects.items()))
    missing = sorted(techniques - set(effects))
    needs = needs_of(res)
    status = combine(res)
    if missing and status == HOLDS:  # a technique never ablated is not shown to contribute
        status = INCONCLUSIVE
    if missing:
        ours += f"; not ablated: {', '.join(missing)}"
        needs.append(Need("unavailable", text=f"ablation cells without {', '.join(missing)} (run the paper's grid)"))
    return [Outcome(status, ours + "; " + summary(res, "ablations"), evidence(res), ours, needs=needs)]


def _nonzero(g: Group) -> float:
    """Nonzero prunable encoder weights: dense fp32 bytes / 4 x measured density."""
    vals = [c.metrics.get("encoder_bytes_dense_fp32", math.nan) / 4 * (1 - (c.metrics.get("sparsity_measured")
            if math.isfinite(c.metrics.get("sparsity_measured", math.nan)) else 0.0)) for c in g.cells]
    vals = [v for v in vals if math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


@rule
def equal_size(spec, groups, kernels, limits) -> list[Outcome]:
    """A smaller dense model against the sparse cell of a larger model with the most nonzero weights
    <= `options.tolerance` x the small one's (same task and recipe): the sparse one must be more accurate.
    One outcome per sparsity level."""
    tol = float(spec.options.get("tolerance", 1.1))
    dense = [g for g in select(groups, spec.options.get("small", {})) if g.sparsity_method == "dense"]
    sparse = select(groups, spec.cells, spec.exclude)
    size = lambda g: g.mean("encoder_bytes_dense_fp32")  # noqa: E731
    pairs = []
    for small in dense:
        nz = _nonzero(small)
        cands = [g for g in sparse if same_recipe_but_model(g, small) and size(g) > 1.05 * size(small)
                 and _nonzero(g) <= tol * nz]
        if cands:
            pairs.append((max(cands, key=lambda g: (g.distill_method == small.distill_method, _nonzero(g))), small))
    by_level: dict[str, list] = defaultdict(list)
    for big, small in top_pairs(pairs):  # each small model at the largest budget with a partner
        by_level[big.sparsity_label].append(judge_pair(big, small, groups, 0.0, limits, strict=True,
                                                       converged=spec.converged))
    if not by_level:
        return [Outcome(NOT_RUN, "no smaller dense model with a sparse model of equal nonzero weights")]
    out = []
    for level, res in sorted(by_level.items()):
        worst = min(res, key=lambda r: r.value)
        out.append(Outcome(combine(res), summary(res, "equal-size pairs"), evidence(res),
                           f"sparse - small dense {worst.interval.text()}", f"{level} vs {worst.ref.model_label}",
                           needs_of(res)))
    return out


def same_recipe_but_model(a: Group, b: Group) -> bool:
    return (a.task == b.task and a.profile == b.profile and a.budget == b.budget
            and a.train_examples == b.train_examples)


@rule
def equal_latency(spec, groups, kernels, limits) -> list[Outcome]:
    """Larger sparse cells (best latency_ms_<options.sparse_backend>*) against smaller dense cells
    (latency_ms_<options.dense_backend>): in the pairs where the sparse one is at most `options.tolerance`
    x as slow, it must be more accurate."""
    sb, db, tol = spec.options.get("sparse_backend", "sparq"), spec.options.get("dense_backend", "torch_fp32"), \
        float(spec.options.get("tolerance", 1.1))
    ms = lambda g, b: min((v for k, v in g.latency().items() if k.startswith(b)), default=math.nan)  # noqa: E731
    size = lambda g: g.mean("encoder_bytes_dense_fp32")  # noqa: E731
    sparse = [g for g in select(groups, spec.cells, spec.exclude) if math.isfinite(ms(g, sb))]
    dense = [g for g in select(groups, spec.options.get("small", {})) if math.isfinite(ms(g, db))]
    comparable = [(s, d) for s in sparse for d in dense if same_recipe_but_model(s, d) and size(s) > 1.05 * size(d)]
    busy = busy_note(select(groups, spec.cells, spec.exclude) + select(groups, spec.options.get("small", {})))
    if not comparable:
        return [Outcome(NOT_RUN, f"no latency for a larger sparse and a smaller dense model on one task{busy}")]
    pairs = top_pairs([(s, d) for s, d in comparable if ms(s, sb) <= tol * ms(d, db)])
    shown = pairs or comparable  # the equal-latency pairs when there are any (else the closest misses)
    if not pairs:
        shown = sorted(comparable, key=lambda p: ms(p[0], sb) / ms(p[1], db))
    lat = "; ".join(f"{desc(s)} {ms(s, sb):.2f} ms vs {desc(d)} {ms(d, db):.2f} ms ({ms(s, sb) / ms(d, db):.2f}x)"
                    for s, d in shown[:3])
    if not pairs:
        ev: list[Group] = []
        for x in (x for p in comparable for x in p):
            ev += [x] if all(x is not e for e in ev) else []
        return [Outcome(FAILS, f"no larger sparse model is as fast as a smaller dense one (closest: {lat}){busy}",
                        ev, f"{len(comparable)} pairs, none at equal latency")]
    res = [judge_pair(s, d, groups, 0.0, limits, strict=True, converged=spec.converged) for s, d in pairs]
    worst = min(res, key=lambda r: r.value)
    return [Outcome(combine(res), summary(res, "equal-latency pairs") + f"; equal-latency pairs: {lat}{busy}",
                    evidence(res), f"{worst.interval.text()} at equal latency", needs=needs_of(res))]
