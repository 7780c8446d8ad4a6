"""Markdown for the curves: accuracy vs sparsity per task (with the paper's points and the knees),
and accuracy vs training budget for the key arms. Pure functions of groups.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from suite.report.curves import budget_curve, curve_key, knee, sparsity_curves
from suite.report.intervals import delta_text
from suite.report.records import PROFILE_ORDER, Group, fmt_pm
from suite.report.references import references_for

KNEES = (1.0, 2.0)  # points below dense


def _esc(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _pct(x: float) -> str:
    return f"{x * 100:g}%"


def curve_label(g: Group) -> str:
    extra = [x for x in (g.distill_method if g.distill_method != "none" else "", g.bits_label if g.bits_label != "fp32"
                         else "", f"init {g.init}" if g.init != "pretrained" else "", g.variant) if x]
    return f"{g.model_label} {g.sparsity_method}" + (f" + {' + '.join(extra)}" if extra else "") + f" @{g.budget}"


def arm_label(g: Group) -> str:
    """A key arm across budgets: 'minilm gmp 90% + logits', 'minilm (1/6 layers) dense + logits'."""
    label = curve_label(g).rsplit(" @", 1)[0]
    return label.replace(f" {g.sparsity_method}", f" {g.sparsity_label}", 1)


def _point(g: Group, base: Group) -> str:
    d = g.mean() - base.mean()
    return f"{fmt_pm(g.mean(), g.std())} ({d:+.2f})"


def curve_table(profile: str, task: str, curves: list[list[tuple[Group, Group]]]) -> str:
    levels = sorted({g.sparsity_target for c in curves for g, _ in c}
                    | {r.sparsity for r in references_for(task) if r.sparsity > 0})
    head = ["curve", "seeds", "dense"] + [_pct(x) for x in levels] + [f"knee ≤{t:g} pt" for t in KNEES]
    lines = [f"### {task} ({profile}): accuracy vs sparsity", "",
             "Ours: eval_primary mean ± std over seeds (Δ to our dense baseline of the same model, budget and "
             "recipe). Knee: the highest sparsity within 1 / 2 points of dense, interpolated between measured "
             "points (range: the knees of mean ± std; `+`: every point is within, the knee lies beyond).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for curve in curves:
        g0, base = curve[0]
        at = {g.sparsity_target: g for g, _ in curve}
        seeds = sorted({s for g, _ in curve for s in g.seeds})
        row = [curve_label(g0), ",".join(seeds), fmt_pm(base.mean(), base.std())]
        row += [(_point(at[x], base) + (f" {at[x].sparsity_pattern}" if ":" in at[x].sparsity_pattern else ""))
                if x in at else "" for x in levels]
        row += [knee(curve, t).text() for t in KNEES]
        lines.append("| " + " | ".join(_esc(c) for c in row) + " |")
    refs = references_for(task)
    by: dict[tuple, dict[float, str]] = defaultdict(dict)
    sources = []
    for r in refs:
        first = next(iter(r.metrics.values()))
        by[(r.model, r.paper, r.sparsity_kind if r.sparsity_kind != "dense" else "")][r.sparsity] = \
            f"{first:.{r.digits}f}"
        sources += [r.source] if r.source not in sources else []
    for (model, paper, kind), pts in by.items():
        row = [" ".join(x for x in ("paper:", model, kind, f"({paper})") if x), "", pts.get(0.0, "")]
        row += [pts.get(x, "") for x in levels] + ["", ""]
        lines.append("| " + " | ".join(_esc(c) for c in row) + " |")
    if sources:
        lines += ["", "Paper points (their models, not ours): " + "; ".join(sources) + "."]
    return "\n".join(lines) + "\n"


def curve_tables(groups: Sequence[Group]) -> dict[str, str]:
    """'sparsity_curves-<profile>' -> Markdown, one section per task with a curve."""
    out = {}
    for profile in sorted({g.profile for g in groups}, key=lambda p: (PROFILE_ORDER.get(p, 9), p)):
        mine = [g for g in groups if g.profile == profile]
        curves = sparsity_curves(mine, groups)
        if not curves:
            continue
        by_task: dict[str, list] = defaultdict(list)
        for key, c in sorted(curves.items(), key=lambda kv: str(kv[0])):
            by_task[key[2]].append(c)
        body = [curve_table(profile, t, cs) for t, cs in sorted(by_task.items())]
        out[f"sparsity_curves-{profile}"] = f"## Sparsity curves ({profile})\n\n" + "\n".join(body)
    return out


def budget_families(groups: Sequence[Group]) -> list[list[tuple[Group, Group | None]]]:
    """Configurations recorded at two or more budgets, each [(group, its dense) by budget]."""
    seen: set[tuple] = set()
    fams = []
    for g in groups:
        curve = budget_curve(g, groups)
        if len(curve) < 2:
            continue
        key = curve_key(g)[:3] + curve_key(g)[4:] + (g.sparsity_target,)
        if key in seen:
            continue
        seen.add(key)
        fams.append(curve)
    return fams


def budget_tables(groups: Sequence[Group]) -> dict[str, str]:
    """'budget_curves-<profile>' -> Markdown: per task, each key arm at 1x / 2x / 4x the recipe's steps."""
    out = {}
    for profile in sorted({g.profile for g in groups}, key=lambda p: (PROFILE_ORDER.get(p, 9), p)):
        fams = budget_families([g for g in groups if g.profile == profile])
        if not fams:
            continue
        lines = [f"## Budget curves ({profile})", "",
                 "eval_primary mean ± std over seeds at each budget (x the recipe's optimizer steps over the same "
                 "train subset; each cell names the optimizer steps it took: a QAT arm's two phases take twice "
                 "the recipe's); in brackets Δ to our dense baseline of the same steps with its 95% interval (a "
                 "smaller model: to the largest dense model of the task).", ""]
        for task in sorted({f[0][0].task for f in fams}):
            tf = [f for f in fams if f[0][0].task == task]
            budgets = sorted({g.budget_factor for f in tf for g, _ in f})
            head = ["arm"] + [f"{b:g}x" for b in budgets]
            lines += [f"### {task}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for f in tf:
                at = {g.budget_factor: (g, b) for g, b in f}
                row = [arm_label(f[0][0])]
                for x in budgets:
                    if x not in at:
                        row.append("")
                        continue
                    g, b = at[x]
                    d = "" if b is None or b is g else f" ({delta_text(g, b)})"
                    row.append(fmt_pm(g.mean(), g.std()) + d + f", {g.steps or '?'} steps")
                lines.append("| " + " | ".join(_esc(c) for c in row) + " |")
            lines.append("")
        out[f"budget_curves-{profile}"] = "\n".join(lines)
    return out
