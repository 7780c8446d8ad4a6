"""The terminal summary printed at the end of ./reproduce.sh and every grid: one line per row
(cells equal but for the seed) of the experiments just run: accuracy ± std, Δ to our dense
baseline, packed compression, fastest latency, the claims whose evidence it is, and where the
local report is.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from pathlib import Path

from suite.report.intervals import delta_text
from suite.report.records import Group, baseline_for, fmt_pm

SHORT = {"holds": "holds", "does not hold": "fails", "inconclusive": "inconcl.", "not run": "not run"}


def _in(group: Group, experiments: Sequence[str]) -> bool:
    names = {c.experiment for c in group.cells}
    return not experiments or any(fnmatch.fnmatch(n, pat) for n in names for pat in experiments)


def _label(g: Group, show_examples: bool = False) -> str:
    parts = [g.paper, g.task, g.model_label, g.sparsity_label, g.bits_label]
    if g.distill_method != "none":
        parts.append(f"kd:{g.distill_method}")
    if getattr(g, "budget", "1x") not in ("1x", None, ""):
        parts.append(f"budget {g.budget}")
    if getattr(g, "init", "pretrained") not in ("pretrained", None, ""):
        parts.append(f"init {g.init}")
    if show_examples:  # rows of different train subsets side by side
        parts.append(f"{getattr(g, 'train_examples', None) or '?'} ex")
    variant = getattr(g, "variant", "")
    if variant:
        parts.append(variant if isinstance(variant, str) else ",".join(f"{k}={v}" for k, v in variant))
    return " ".join(str(p) for p in parts)


def _latency(g: Group) -> str:
    lat = {k: v for k, v in g.latency().items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if not lat:
        return "–"
    k = min(lat, key=lat.get)
    return f"{lat[k]:.2f} ({k.removeprefix('latency_ms_')})"


def _compression(g: Group) -> str:
    vals = [c.record.get("compression", {}).get("compression_packed") for c in g.cells]
    vals = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
    return f"{sum(vals) / len(vals):.2f}x" if vals else "–"


def touched(g: Group, verdicts: Sequence) -> str:
    ids = set(g.cell_ids)
    out = []
    for v in verdicts:
        v = getattr(v, "source", v)  # a transition ClaimRow carries its ClaimVerdict
        v = v.to_dict() if hasattr(v, "to_dict") else v
        if ids & set(v.get("evidence") or ()):
            out.append(f"{v['id']} {SHORT.get(v['verdict'], v['verdict'])}")
    return ", ".join(dict.fromkeys(out)) or "–"


def table(groups: Sequence[Group], verdicts: Sequence, experiments: Sequence[str] = ()) -> list[list[str]]:
    head = ["cell (paper task model sparsity bits kd)", "seeds", "score % ± std", "Δ dense [95% CI]", "compression",
            "latency ms", "verdicts touched"]
    body = []
    mine = [g for g in groups if _in(g, experiments)]
    show_examples = len({getattr(g, "train_examples", None) for g in mine}) > 1
    for g in mine:
        base = baseline_for(g, groups)
        body.append([_label(g, show_examples), str(len(g.cells)), fmt_pm(g.mean(), g.std()),
                     "base" if base is g else delta_text(g, base),
                     _compression(g), _latency(g), touched(g, verdicts)])
    return [head] + body


def text(groups: Sequence[Group], verdicts: Sequence, experiments: Sequence[str], out: Path,
         width: int = 60) -> str:
    experiments = list(dict.fromkeys(experiments))  # `all` names prune_ofa-quick for three grids
    rows = table(groups, verdicts, experiments)
    what = ", ".join(experiments) or "all experiments"
    if len(rows) == 1:
        lines = [f"[sparq] no finished cells recorded for {what}"]
    else:
        rows = [[c if len(c) <= width else c[: width - 1] + "…" for c in r] for r in rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

        def fmt_row(r: list[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

        lines = [f"[sparq] summary of {what}: {len(rows) - 1} rows (mean ± std over seeds)", fmt_row(rows[0]),
                 "  ".join("-" * w for w in widths)] + [fmt_row(r) for r in rows[1:]]
    page = Path(out) / "leaderboard.html"
    lines.append(f"[sparq] local report: {page} (tables.md, claims.md, plots/ beside it); "
                 f"the published results/ is unchanged (python -m suite.report --publish)")
    return "\n".join(lines)
