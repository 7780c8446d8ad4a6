"""Claims of docs/papers.md as small pure rules over recorded groups: a registry of verdicts.

Each rule takes the groups of one profile (and, for speed claims, kernel benchmark rows) and
returns a `Verdict`: holds / does not hold / not run, the cells it rests on, and a one-line detail.
No run, no verdict: a rule with nothing to judge says "not run".
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from suite.report.records import PROFILE_ORDER, Group, baseline_for, delta

HOLDS, FAILS, NOT_RUN = "holds", "does not hold", "not run"
FLOAT_TOL = 1e-9


@dataclass
class Verdict:
    status: str
    detail: str = ""
    cells: list[str] = field(default_factory=list)  # cell_ids the verdict rests on
    profile: str = ""
    models: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    statement: str
    rule: str
    fn: Callable[[Sequence[Group], Sequence[dict]], Verdict]
    uses_kernels: bool = False


CLAIMS: dict[str, Claim] = {}


def claim(cid: str, paper: str, statement: str, rule: str, uses_kernels: bool = False):
    def register(fn):
        if cid in CLAIMS:
            raise ValueError(f"claim {cid} registered twice")
        CLAIMS[cid] = Claim(cid, paper, statement, rule, fn, uses_kernels)
        return fn
    return register


# ------------------------------------------------------------------ helpers (pure)

def _ids(groups: Sequence[Group | None]) -> list[str]:
    out: list[str] = []
    for g in groups:
        if g is not None:
            out += [c for c in g.cell_ids if c and c not in out]
    return out


def _models(groups: Sequence[Group | None]) -> list[str]:
    return sorted({g.model_label for g in groups if g is not None})


def _desc(g: Group) -> str:
    return f"{g.model_label} {g.task} {g.sparsity_label} {g.bits_label} {g.distill_method}".strip()


def within_dense(selected: Sequence[Group], groups: Sequence[Group], points: float = math.inf,
                 relative: float | None = None, what: str = "cells") -> Verdict:
    """Every selected group within `points` (or `relative` fraction) of its dense baseline."""
    pairs = [(g, baseline_for(g, groups)) for g in selected]
    pairs = [(g, b) for g, b in pairs if b is not None and math.isfinite(delta(g, b))]
    pairs, skipped = drop_at_chance(pairs, "dense baseline")
    if not pairs:
        extra = f" ({len(selected)} {what} recorded, no dense baseline)" if selected else ""
        return Verdict(NOT_RUN, f"no {what} with a dense baseline that learned the task{extra}{skipped}")
    fails, worst = [], None
    for g, b in pairs:
        d = delta(g, b)
        ok = (g.mean() >= (1 - relative) * b.mean() - FLOAT_TOL) if relative is not None else d >= -points - FLOAT_TOL
        if not ok:
            fails.append(g)
        if worst is None or d < worst[0]:
            worst = (d, g)
    evidence = [x for p in pairs for x in p]
    detail = (f"{len(pairs) - len(fails)}/{len(pairs)} {what} pass; worst Δ {worst[0]:+.2f} pt "
              f"({_desc(worst[1])}){skipped}")
    return Verdict(FAILS if fails else HOLDS, detail, _ids(evidence), models=_models(evidence))


CHANCE_ZERO_METRICS = ("mcc", "pearson", "spearmanr")  # 0 is chance level for these


def at_chance(baseline: Group) -> bool:
    """A dense baseline that never learned the task (e.g. CoLA MCC 0: one class predicted for
    all): a compressed cell "within 1 point" of it says nothing, so the pair is not judged.
    Accuracy has no fixed chance level (it is the majority-class rate), so it is never skipped."""
    return baseline.first.params.get("task.primary") in CHANCE_ZERO_METRICS and baseline.mean() <= FLOAT_TOL


def drop_at_chance(pairs: list[tuple[Group, Group]], reference: str) -> tuple[list, str]:
    """(cell, reference) pairs without those whose reference is at chance, and a note saying so."""
    chance = [(g, r) for g, r in pairs if at_chance(r)]
    kept = [(g, r) for g, r in pairs if not at_chance(r)]
    note = f"; {len(chance)} not judged: {reference} at chance ({_desc(chance[0][1])})" if chance else ""
    return kept, note


def _partner(g: Group, groups: Sequence[Group], **changes) -> Group | None:
    """The group equal to `g` in every axis but `changes` (attribute -> wanted value)."""
    def same(h: Group) -> bool:
        for attr in ("profile", "model_label", "task", "sparsity_method", "sparsity_target", "nm",
                     "quant_method", "weight_bits", "act_bits", "distill_method"):
            want = changes.get(attr, getattr(g, attr))
            if getattr(h, attr) != want:
                return False
        return True
    cands = [h for h in groups if h is not g and same(h)]
    return min(cands, key=lambda h: (h.paper != g.paper, h.variant_items != g.variant_items), default=None)


def _is_shrunk(g: Group) -> bool:
    return g.model_label != g.model


def _nonzero_weights(g: Group) -> float:
    """Nonzero prunable encoder weights: dense fp32 bytes / 4 x measured density."""
    vals = [c.metrics.get("encoder_bytes_dense_fp32", math.nan) / 4 * (1 - c.metrics.get("sparsity_measured", 0))
            for c in g.cells]
    vals = [v for v in vals if math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


def _best_latency(lat: dict[str, float], contains: str | None = None) -> float:
    vals = [v for k, v in lat.items() if contains is None or contains in k]
    return min(vals) if vals else math.nan


# ------------------------------------------------------------------ Prune Once for All

@claim("PO1", "prune_ofa", "85-90% sparse models transfer within ~1-2 points of dense on every task",
       "every gmp/block fp32 cell with sparsity.target in [0.85, 0.90] has eval_primary >= its dense "
       "baseline - 2 points (mean over seeds)")
def po1(groups, kernels):
    sel = [g for g in groups if g.sparsity_method in ("gmp", "block") and 0.85 - FLOAT_TOL <= g.sparsity_target
           <= 0.90 + FLOAT_TOL and g.weight_bits >= 32]
    return within_dense(sel, groups, points=2.0, what="85-90% sparse cells")


@claim("PO2", "prune_ofa", "int8 QAT on top of the sparse model costs < 1 point",
       "every qat 8-bit cell loses < 1 point of eval_primary against the same cell in fp32 "
       "(same model, task, sparsity, distill)")
def po2(groups, kernels):
    pairs = [(g, _partner(g, groups, quant_method="fp32", weight_bits=32, act_bits=32))
             for g in groups if g.quant_method == "qat" and g.weight_bits == 8]
    pairs = [(g, f) for g, f in pairs if f is not None]
    pairs, skipped = drop_at_chance(pairs, "fp32 twin")
    if not pairs:
        return Verdict(NOT_RUN, f"no qat int8 cell with an fp32 twin that learned the task{skipped}")
    drops = [(f.mean() - g.mean(), g) for g, f in pairs]
    worst = max(drops, key=lambda x: x[0])
    fails = [d for d, _ in drops if not d < 1.0]
    ev = [x for p in pairs for x in p]
    return Verdict(FAILS if fails else HOLDS,
                   f"{len(drops) - len(fails)}/{len(drops)} pairs pass; worst drop {worst[0]:+.2f} pt "
                   f"({_desc(worst[1])}){skipped}", _ids(ev), models=_models(ev))


@claim("PO3", "prune_ofa", "encoder compression 40x at < 1% loss",
       "every cell with compression_nominal >= 40x (values only, 32/bits x 1/density) keeps "
       "eval_primary >= 99% of its dense baseline (relative)")
def po3(groups, kernels):
    sel = [g for g in groups if g.mean("compression_nominal") >= 40 - 0.5]
    return within_dense(sel, groups, relative=0.01, what="cells at >= 40x")


# ------------------------------------------------------------------ IntelCaffe int8

@claim("IC1", "intelcaffe_int8", "calibration-only (post-training) int8 loses < 1 point",
       "every dense ptq cell with 8-bit weights has eval_primary > its dense fp32 baseline - 1 point")
def ic1(groups, kernels):
    sel = [g for g in groups if g.quant_method == "ptq" and g.weight_bits == 8 and g.sparsity_method == "dense"]
    return within_dense(sel, groups, points=1.0 - FLOAT_TOL * 2, what="dense ptq int8 cells")


DENSE_INT8_PREFIXES = ("torch_int8", "onnxruntime_int8", "ort_int8")


@claim("IC2", "intelcaffe_int8", "int8 inference is 1.3x-3x faster than fp32 on the same CPU",
       "int8 cells with latency_ms_* metrics: fp32 latency (backend name containing 'fp32', the cell's or "
       "its dense baseline's) / best int8 latency >= 1.3 for every cell; without such cells, the kernel "
       "bench: median over shapes of the best dense int8 backend's speedup_vs_fp32 >= 1.3 "
       "(above 3x still holds)", uses_kernels=True)
def ic2(groups, kernels):
    ratios = []
    for g in groups:
        if g.quant_method == "fp32" or g.weight_bits != 8:
            continue
        lat = g.latency()
        int8 = _best_latency({k: v for k, v in lat.items() if "fp32" not in k})
        fp32 = _best_latency(lat, "fp32")
        base = baseline_for(g, groups)
        if not math.isfinite(fp32) and base is not None:
            fp32 = _best_latency(base.latency(), "fp32")
        if math.isfinite(int8) and math.isfinite(fp32) and int8 > 0:
            ratios.append((fp32 / int8, g, base))
    if ratios:
        worst = min(ratios, key=lambda r: r[0])
        ok = all(r >= 1.3 for r, _, _ in ratios)
        ev = [x for _, g, b in ratios for x in (g, b)]
        return Verdict(HOLDS if ok else FAILS, f"{len(ratios)} int8 cells; fp32/int8 latency "
                       f"{min(r for r, *_ in ratios):.2f}x-{max(r for r, *_ in ratios):.2f}x "
                       f"(lowest: {_desc(worst[1])})", _ids(ev), models=_models(ev))
    best: dict[tuple, float] = {}
    for row in kernels:
        b, s = str(row.get("backend", "")), row.get("speedup_vs_fp32")
        if b.startswith(DENSE_INT8_PREFIXES) and s is not None and math.isfinite(s):
            shape = (row.get("k"), row.get("n"), row.get("m"), row.get("model"), row.get("batch"))
            best[shape] = max(best.get(shape, 0.0), s)
    if not best:
        return Verdict(NOT_RUN, "no latency_ms_* metrics on int8 cells and no int8 kernel bench rows")
    med = statistics.median(best.values())
    return Verdict(HOLDS if med >= 1.3 else FAILS,
                   f"kernel bench: best dense int8 backend {med:.2f}x over torch fp32 (median of "
                   f"{len(best)} shapes; range {min(best.values()):.2f}x-{max(best.values()):.2f}x)",
                   ["kernels-bench"], models=[])


@claim("IC3", "intelcaffe_int8", "the calibration method (max-abs, percentile, entropy/KL) matters",
       "for ptq cells differing only in quant.calibration (same model, task, sparsity, bits): the spread "
       "of eval_primary means exceeds max(0.5 pt, 2 x the largest seed std) in at least half of the "
       "model x task comparisons")
def ic3(groups, kernels):
    clusters: dict[tuple, list[Group]] = defaultdict(list)
    for g in groups:
        items = dict(g.variant_items)
        if g.quant_method == "ptq" and "quant.calibration" in items:
            rest = tuple((k, v) for k, v in g.variant_items if k != "quant.calibration")
            clusters[(g.model_label, g.task, g.sparsity_label, g.bits_label, g.distill_method, rest)].append(g)
    comps = [gs for gs in clusters.values() if len({dict(g.variant_items)["quant.calibration"] for g in gs}) >= 2]
    if not comps:
        return Verdict(NOT_RUN, "no ptq cells with two or more calibration methods")
    parts, passed = [], 0
    for gs in comps:
        means = {dict(g.variant_items)["quant.calibration"]: g.mean() for g in gs}
        stds = [g.std() for g in gs if math.isfinite(g.std())]
        spread = max(means.values()) - min(means.values())
        thr = max(0.5, 2 * max(stds, default=0.0))
        passed += spread > thr
        parts.append(f"{gs[0].model_label}/{gs[0].task}: spread {spread:.2f} pt (threshold {thr:.2f}; "
                     + ", ".join(f"{k} {v:.2f}" for k, v in sorted(means.items())) + ")")
    ev = [g for gs in comps for g in gs]
    return Verdict(HOLDS if passed * 2 >= len(comps) else FAILS, "; ".join(parts), _ids(ev), models=_models(ev))


# ------------------------------------------------------------------ IBM Deep Compression

def _is_24(g: Group) -> bool:
    return g.sparsity_method == "nm" and (g.nm == (2, 4) or (g.nm is None and abs(g.sparsity_target - 0.5) < 1e-6))


OFF_VALUES = {"false", "none", "null", "off", "0", "", "default"}


def _is_off(value: str) -> bool:
    v = str(value).lower()
    return v in OFF_VALUES or v.startswith("no")


def ablations(groups: Sequence[Group]) -> list[tuple[str, Group, Group]]:
    """(option, full cell, ablated cell) among groups equal in every axis but their variant.

    Three or more: the full cell is the one every other differs from in exactly one option. Two:
    the ablated one has the option off (false / none / default / no...).
    """
    clusters: dict[tuple, list[Group]] = defaultdict(list)
    for g in groups:
        if g.variant_items:
            clusters[g.config_key[:-1] + (g.task,)].append(g)
    out = []
    for gs in clusters.values():
        def diff(a: Group, b: Group) -> list[str]:
            da, db = dict(a.variant_items), dict(b.variant_items)
            return [k for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]
        if len(gs) == 2:
            (a, b), keys = gs, diff(*gs)
            if len(keys) == 1 and _is_off(dict(a.variant_items).get(keys[0], "")) != _is_off(
                    dict(b.variant_items).get(keys[0], "")):
                full, abl = (b, a) if _is_off(dict(a.variant_items).get(keys[0], "")) else (a, b)
                out.append((keys[0], full, abl))
            continue
        for hub in gs:
            diffs = [diff(hub, h) for h in gs if h is not hub]
            if all(len(d) == 1 for d in diffs):
                out += [(diff(hub, h)[0], hub, h) for h in gs if h is not hub]
                break
    return out


@claim("DC1", "ibm_deep_compression", "2:4 sparsity + 4-bit weights (16x) keeps accuracy within ~1 point",
       "every 2:4 N:M cell with 4-bit weights has eval_primary >= its dense fp32 baseline - 1 point "
       "(ablation cells with a technique switched off are not judged)")
def dc1(groups, kernels):
    ablated = {id(a) for _, _, a in ablations(groups)}
    sel = [g for g in groups if _is_24(g) and g.weight_bits == 4 and id(g) not in ablated]
    return within_dense(sel, groups, points=1.0, what="2:4 + 4-bit cells")


@claim("DC2", "ibm_deep_compression", "the zero-preserving quantizer keeps every pruned weight at 0",
       "in every sparse + quantized cell, sparsity_measured (zeros after quantization) >= the pruning "
       "target - 0.001, and any recorded *pruned_nonzero* metric is 0 (cells with "
       "quant.zero_preserving=False, the ablation that switches this quantizer off, are not judged)")
def dc2(groups, kernels):
    sel = [g for g in groups if g.sparsity_method != "dense" and g.quant_method != "fp32"
           and g.first.params.get("quant.zero_preserving") != "False"]
    if not sel:
        return Verdict(NOT_RUN, "no sparse + quantized cells with a zero-preserving quantizer")
    bad = []
    for g in sel:
        for c in g.cells:
            sm = c.metrics.get("sparsity_measured", math.nan)
            leaks = [v for k, v in c.metrics.items() if "pruned_nonzero" in k and v != 0]
            if not (sm >= g.sparsity_target - 1e-3) or leaks:
                bad.append((g, sm))
    detail = (f"{len(sel) - len({id(g) for g, _ in bad})}/{len(sel)} sparse+quantized groups keep their zeros"
              + (f"; e.g. {_desc(bad[0][0])}: measured {bad[0][1]:.4f} < target {bad[0][0].sparsity_target}"
                 if bad else ""))
    return Verdict(FAILS if bad else HOLDS, detail, _ids(sel), models=_models(sel))


DC3_TECHNIQUES = ("zero_preserving", "scale_init", "dropout_schedule")  # the IBM paper's techniques


@claim("DC3", "ibm_deep_compression", "each technique (initialisation, zero-preserving format, scheduled "
       "dropout) contributes, measured by ablation",
       "among QAT cells equal but for one of the IBM technique options (quant.zero_preserving, "
       "quant.scale_init, quant.dropout_schedule), each cell with that technique switched off is compared "
       "with the full cell: holds if no technique's mean effect (full - ablated) is negative")
def dc3(groups, kernels):
    pool = [g for g in groups if g.quant_method == "qat"]
    effects: dict[str, list[tuple[float, Group, Group]]] = defaultdict(list)
    for key, full, abl in ablations(pool):
        if key.removeprefix("quant.") in DC3_TECHNIQUES:
            effects[key].append((full.mean() - abl.mean(), full, abl))
    if not effects:
        return Verdict(NOT_RUN, "no ablation pairs (cells differing in one technique option)")
    parts, ok = [], True
    for k, es in sorted(effects.items()):
        mean = statistics.fmean(e for e, _, _ in es)
        ok &= mean >= 0
        parts.append(f"{k}: {mean:+.2f} pt over {len(es)} pairs")
    ev = [x for es in effects.values() for _, g, h in es for x in (g, h)]
    return Verdict(HOLDS if ok else FAILS, "; ".join(parts), _ids(ev), models=_models(ev))


# ------------------------------------------------------------------ SparseBERT / S4

@claim("S1", "sparsebert_s4", "at equal nonzero parameters, a pruned model beats a layer- or width-reduced "
       "dense model",
       "each dense shrunk-model cell (model.shrink_*) is paired with the sparse fp32 cell of the same base "
       "model and task with the most nonzero encoder weights <= 1.1x the small model's; the sparse one must "
       "have the higher eval_primary in every pair")
def s1(groups, kernels):
    pairs = []
    for small in (g for g in groups if _is_shrunk(g) and g.sparsity_method == "dense" and g.weight_bits >= 32):
        nz = _nonzero_weights(small)
        cands = [g for g in groups if g.sparsity_method != "dense" and g.weight_bits >= 32 and not _is_shrunk(g)
                 and g.model == small.model and g.task == small.task and _nonzero_weights(g) <= 1.1 * nz]
        if cands:
            pairs.append((max(cands, key=_nonzero_weights), small))
    if not pairs:
        return Verdict(NOT_RUN, "no shrunk dense model with a sparse model of equal nonzero weights")
    wins = [(s.mean() - d.mean(), s, d) for s, d in pairs]
    ev = [x for p in pairs for x in p]
    worst = min(wins, key=lambda w: w[0])
    return Verdict(HOLDS if all(w > 0 for w, _, _ in wins) else FAILS,
                   f"sparse wins {sum(w > 0 for w, _, _ in wins)}/{len(wins)}; smallest margin {worst[0]:+.2f} pt "
                   f"({_desc(worst[1])} vs {_desc(worst[2])})", _ids(ev), models=_models(ev))


@claim("S2", "sparsebert_s4", "at equal measured latency on sparse kernels, a larger sparse model is more "
       "accurate than a smaller dense one",
       "pairs (larger sparse fp32-trained cell, smaller dense fp32 cell; same task): the sparse cell's best "
       "latency_ms_sparq_* (sparse kernels) <= 1.1x the dense cell's latency_ms_torch_fp32: the sparse one "
       "must be more accurate in every such pair, and one such pair must exist when both have latency")
def s2(groups, kernels):
    def sparse_ms(g: Group) -> float:
        return _best_latency(g.latency(), "sparq")

    def dense_ms(g: Group) -> float:
        return _best_latency(g.latency(), "fp32")

    sparse = [g for g in groups if g.sparsity_method != "dense" and math.isfinite(sparse_ms(g))]
    dense = [g for g in groups if g.sparsity_method == "dense" and g.quant_method == "fp32"
             and math.isfinite(dense_ms(g))]
    size = lambda g: g.mean("encoder_bytes_dense_fp32")  # noqa: E731
    comparable = [(s, d) for s in sparse for d in dense if s.task == d.task and size(s) > size(d) * 1.05]
    if not comparable:
        return Verdict(NOT_RUN, "no latency for a larger sparse and a smaller dense model on one task")
    pairs = [(s, d) for s, d in comparable if sparse_ms(s) <= 1.1 * dense_ms(d)]
    ev = [x for p in (pairs or comparable) for x in p]
    if not pairs:
        return Verdict(FAILS, f"no larger sparse model reaches a smaller dense one's latency "
                       f"({len(comparable)} candidate pairs)", _ids(ev), models=_models(ev))
    wins = [s.mean() > d.mean() for s, d in pairs]
    return Verdict(HOLDS if all(wins) else FAILS, f"sparse more accurate in {sum(wins)}/{len(wins)} "
                   "equal-latency pairs", _ids(ev), models=_models(ev))


@claim("S3", "sparsebert_s4", "95% sparsity with distillation stays near dense",
       "every fp32 cell with sparsity.target >= 0.95 and distill != none has eval_primary >= its dense "
       "baseline - 2 points (the paper: MRPC -0.5, QNLI -1.15)")
def s3(groups, kernels):
    sel = [g for g in groups if g.sparsity_method != "dense" and g.sparsity_target >= 0.95 - FLOAT_TOL
           and g.distill_method != "none" and g.weight_bits >= 32]
    return within_dense(sel, groups, points=2.0, what="95% distilled cells")


# ------------------------------------------------------------------ evaluation

@dataclass
class ClaimRow:
    claim: Claim
    verdict: Verdict


def evaluate(groups: Sequence[Group], kernel_rows: Sequence[dict] = ()) -> list[ClaimRow]:
    """One row per claim and profile with a verdict; a single `not run` row where nothing applies."""
    profiles = sorted({g.profile for g in groups}, key=lambda p: (PROFILE_ORDER.get(p, 9), p))
    rows = []
    for c in CLAIMS.values():
        found, reasons = [], []
        for p in profiles:
            v = c.fn([g for g in groups if g.profile == p], [])
            v.profile = p
            (found if v.status != NOT_RUN else reasons).append(v)
        if not found and c.uses_kernels and kernel_rows:
            v = c.fn([], kernel_rows)
            v.profile = "kernel bench"
            (found if v.status != NOT_RUN else reasons).append(v)
        if found:
            rows += [ClaimRow(c, v) for v in found]
        else:
            detail = reasons[0].detail if reasons else "no runs recorded"
            rows.append(ClaimRow(c, Verdict(NOT_RUN, detail)))
    return rows


def short_id(cell_id: str) -> str:
    """First 8 characters of a hex cell_id; other evidence names (kernels-bench) stay whole."""
    return cell_id[:8] if len(cell_id) == 16 and all(ch in "0123456789abcdef" for ch in cell_id) else cell_id


def claims_markdown(rows: Sequence[ClaimRow], max_ids: int = 12) -> str:
    lines = ["# Claims of the papers, judged on the recorded runs", "",
             "Each verdict is computed from MLflow runs by the rule beside it (suite/report/claims.py). "
             "No run, no verdict. Cells are MLflow `cell_id` tags (first 8 characters); "
             "leaderboard.json has them in full.", "",
             "| claim | paper | statement | verdict | profile | model | rule | evidence | cells |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ids = [short_id(i) for i in r.verdict.cells]
        shown = " ".join(ids[:max_ids]) + (f" +{len(ids) - max_ids} more" if len(ids) > max_ids else "")
        cells = [r.claim.id, r.claim.paper, r.claim.statement, f"**{r.verdict.status}**", r.verdict.profile or "–",
                 ", ".join(r.verdict.models) or "–", r.claim.rule, r.verdict.detail, shown or "–"]
        lines.append("| " + " | ".join(str(x).replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
    return "\n".join(lines) + "\n"
