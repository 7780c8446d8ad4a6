"""What leaderboard.html shows, as plain data (pure functions of the board and the verdicts):
one row per record ranked per task, the Pareto scatter geometry (inline SVG), the best cell under
each size / latency budget, and the claims per paper. html.py only renders these.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from suite.report.leaderboard import machine, machine_label
from suite.report.plots import pareto_front
from suite.report.records import PROFILE_ORDER, method_label

BADGE = {"holds": "holds", "does not hold": "fails", "inconclusive": "inconclusive", "not run": "notrun"}


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def metric_name(metrics: dict) -> str:
    """The eval_* metric eval_primary reports (in percent), e.g. 'accuracy'."""
    p = _num(metrics.get("eval_primary"))
    for k, v in sorted(metrics.items()):
        v = _num(v)
        if p is None or v is None or not k.startswith("eval_") or k == "eval_primary":
            continue
        if abs(v * 100 - p) < 1e-6 or abs(v - p) < 1e-6:
            return k.removeprefix("eval_")
    return "primary"


@dataclass
class Row:
    key: str  # unique per row (cell id + machine): the row's element id
    cell_id: str
    anchor: bool  # first row of its cell id (carries id="cell-<cell_id>")
    rec: dict
    task: str
    profile: str
    paper: str
    model: str
    method: str
    sparsity: str
    target: float | None
    measured: float | None
    bits: str
    distill: str
    variant: str
    seed: str
    budget: str
    metric: str
    primary: float | None
    compression: float | None
    nominal: float | None
    size_mb: float | None
    latency: float | None  # None when timed on a busy machine: left out of the latency views
    latency_backend: str
    latencies: str
    latency_busy: float | None  # the fastest latency of a cell timed on a busy machine (shown, marked)
    cpu_busy: float | None
    machine: str
    machine_detail: str
    command: str
    git: str
    dirty: bool
    rank: int = 0


def rows(records: Sequence[dict]) -> list[Row]:
    """One row per record, ranked by the headline metric within (profile, task), best first."""
    out, seen = [], set()
    for i, r in enumerate(records):
        ax, comp, lat = r.get("axes", {}), r.get("compression", {}), r.get("latency", {})
        lats = {k.removeprefix("latency_ms_"): v for k, v in lat.items()
                if k.startswith("latency_ms_") and _num(v) is not None}
        best = min(lats, key=lats.get) if lats else ""
        busy = lat.get("quiet") is False  # timed while the CPUs were busy (suite/quiet.py): no evidence
        m = machine(r)
        detail = "; ".join(x for x in (
            f"ISA: {' '.join(m['isa']) or '–'}", f"kernel path: {m['kernel_path'] or '–'}",
            f"threads: {m['threads'] or '–'}", f"torch {m['torch'] or '?'}, transformers {m['transformers'] or '?'}, "
            f"python {m['python'] or '?'}") if x)
        size = _num(comp.get("encoder_bytes_packed"))
        cid = r.get("cell_id", "")
        experiment, profile = r.get("experiment", ""), ax.get("profile", "")
        out.append(Row(
            key=f"r{i}", cell_id=cid, anchor=cid not in seen, rec=r, task=ax.get("task", "?"), profile=profile,
            paper=experiment.removesuffix(f"-{profile}"), model=ax.get("model", "?"),
            method=ax.get("sparsity_method", "dense"),
            sparsity=method_label(r, "sparsity"),
            target=_num(ax.get("sparsity_target")), measured=_num(comp.get("sparsity_measured")),
            bits=method_label(r, "quant"),
            distill=ax.get("distill_method", "none"),
            variant=", ".join([f"init={ax['init']}"] * (ax.get("init") not in (None, "", "pretrained"))
                              + [f"{k}={v}" for k, v in sorted((ax.get("variant") or {}).items())]),
            seed=str(ax.get("seed", "")), budget=ax.get("budget") or "1x",
            metric=metric_name(r.get("metrics", {})), primary=_num(r.get("metrics", {}).get("eval_primary")),
            compression=_num(comp.get("compression_packed")), nominal=_num(comp.get("compression_nominal")),
            size_mb=size / 1e6 if size else None, latency=None if busy else lats.get(best),
            latency_backend=best, latencies=", ".join(f"{k} {v:.2f}" for k, v in sorted(lats.items())),
            latency_busy=lats.get(best) if busy else None, cpu_busy=_num(lat.get("cpu_busy")),
            machine=machine_label(r), machine_detail=detail, command=r.get("command", ""),
            git=r.get("git_sha", ""), dirty=bool(r.get("git_dirty"))))
        seen.add(cid)
    by_task: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in out:
        by_task[(row.profile, row.task)].append(row)
    for group in by_task.values():
        group.sort(key=lambda w: -(w.primary if w.primary is not None else -math.inf))
        for n, row in enumerate(group, 1):
            row.rank = n
    return sorted(out, key=lambda w: (PROFILE_ORDER.get(w.profile, 9), w.profile, w.task, w.rank))


# ------------------------------------------------------------------ Pareto scatter (inline SVG)

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 420, 260, 48, 12, 10, 36


@dataclass
class Scatter:
    title: str
    xlabel: str
    ylabel: str
    points: list[dict] = field(default_factory=list)  # {cx, cy, key, cell_id, tip, front, cls}
    front: str = ""  # polyline points
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = W
    height: int = H


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        a, b = math.floor(math.log2(lo)), math.ceil(math.log2(hi))
        step = max(1, math.ceil((b - a) / 6))
        return [2.0 ** e for e in range(a, b + 1, step)]
    span = hi - lo or 1.0
    step = 10 ** math.floor(math.log10(span / 4))
    step *= 5 if span / step > 20 else 2 if span / step > 8 else 1
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def scatter(title: str, xlabel: str, pts: Sequence[tuple[float, float, Row]], log: bool,
            lower_x_better: bool) -> Scatter:
    """Accuracy (y) against a cost (x); the front: no point is better on both."""
    s = Scatter(title, xlabel, "eval_primary (%)")
    pts = [(x, y, r) for x, y, r in pts if x and x > 0 and y is not None]
    if not pts:
        return s
    xs, ys = [x for x, _, _ in pts], [y for _, y, _ in pts]
    lo_x, hi_x = min(xs), max(xs)
    if log:
        lo_x, hi_x = lo_x / 1.25, hi_x * 1.25
    else:
        pad = (hi_x - lo_x) * 0.08 or hi_x * 0.1
        lo_x, hi_x = max(0.0, lo_x - pad), hi_x + pad
    lo_y, hi_y = min(ys), max(ys)
    pad_y = (hi_y - lo_y) * 0.08 or 1.0
    lo_y, hi_y = lo_y - pad_y, hi_y + pad_y
    tx = (lambda v: math.log(v)) if log else (lambda v: v)

    def px(v: float) -> float:
        return round(PAD_L + (tx(v) - tx(lo_x)) / ((tx(hi_x) - tx(lo_x)) or 1) * (W - PAD_L - PAD_R), 1)

    def py(v: float) -> float:
        return round(H - PAD_B - (v - lo_y) / ((hi_y - lo_y) or 1) * (H - PAD_T - PAD_B), 1)

    # pareto_front maximises both coordinates: negate the cost where lower is better
    front = set(pareto_front([(-x if lower_x_better else x, y) for x, y, _ in pts]))
    for i, (x, y, r) in enumerate(pts):
        s.points.append({"cx": px(x), "cy": py(y), "key": r.key, "cell_id": r.cell_id, "front": i in front,
                         "cls": r.method, "tip": f"{r.model} · {r.sparsity} · {r.bits} · {r.distill} · seed {r.seed}"
                         f" | {r.metric} {y:.2f} | {xlabel} {x:.3g} | {r.machine} | cell {r.cell_id}"})
    line = sorted((pts[i][0], pts[i][1]) for i in front)
    s.front = " ".join(f"{px(x)},{py(y)}" for x, y in line)
    s.xticks = [(px(v), f"{v:g}") for v in _ticks(min(xs), max(xs), log) if lo_x <= v <= hi_x]
    s.yticks = [(py(v), f"{v:g}") for v in _ticks(lo_y, hi_y, False) if lo_y <= v <= hi_y]
    return s


def pareto(all_rows: Sequence[Row]) -> list[tuple[str, Scatter, Scatter]]:
    """Per (profile, task): accuracy vs packed compression (log) and vs best measured latency."""
    out = []
    keys = sorted({(r.profile, r.task) for r in all_rows}, key=lambda k: (PROFILE_ORDER.get(k[0], 9), k))
    for profile, task in keys:
        rs = [r for r in all_rows if (r.profile, r.task) == (profile, task)]
        comp = scatter(f"{task} ({profile}): accuracy vs packed compression", "compression (x, packed)",
                       [(r.compression, r.primary, r) for r in rs], log=True, lower_x_better=False)
        lat = scatter(f"{task} ({profile}): accuracy vs latency", "latency (ms, fastest backend)",
                      [(r.latency, r.primary, r) for r in rs], log=False, lower_x_better=True)
        out.append((f"{task} ({profile})", comp, lat))
    return out


def best_under_budget(all_rows: Sequence[Row], cost: str) -> list[tuple[str, list[Row]]]:
    """Per (profile, task): the rows that are the best answer to 'highest accuracy with `cost` at
    most X' for some X (cost ascending, accuracy strictly rising): the budget table without JS."""
    out = []
    keys = sorted({(r.profile, r.task) for r in all_rows}, key=lambda k: (PROFILE_ORDER.get(k[0], 9), k))
    for profile, task in keys:
        rs = sorted((r for r in all_rows if (r.profile, r.task) == (profile, task)
                     and getattr(r, cost) is not None and r.primary is not None),
                    key=lambda r: (getattr(r, cost), -r.primary))
        steps, best = [], -math.inf
        for r in rs:
            if r.primary > best:
                steps.append(r)
                best = r.primary
        if steps:
            out.append((f"{task} ({profile})", steps))
    return out


# ------------------------------------------------------------------ claims per paper

def claims_by_paper(verdicts: Sequence, titles: dict[str, str]) -> list[tuple[str, str, list[dict]]]:
    """[(paper, title, [verdict dicts + badge class])] in the order the papers first appear."""
    papers: dict[str, list[dict]] = {}
    for v in verdicts:
        v = getattr(v, "source", v)  # a transition ClaimRow carries its ClaimVerdict
        d = v.to_dict() if hasattr(v, "to_dict") else dict(v)
        d["badge"] = BADGE.get(d.get("verdict", ""), "notrun")
        papers.setdefault(d.get("paper") or "other", []).append(d)
    return [(p, titles.get(p, p), cs) for p, cs in papers.items()]
