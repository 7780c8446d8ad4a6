"""What leaderboard.html shows, as plain data (pure functions of the board and the verdicts):
one row per record (shown under its configuration's row, configs.py), the Pareto scatter geometry
(inline SVG) and the best configuration under each size / latency budget (configurations at chance
left out of both), and the claims per paper. html.py only renders these.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from suite.report.leaderboard import machine
from suite.report.machines import display_machines
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
    machines = display_machines(records)
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
            machine=machines[i], machine_detail=detail, command=r.get("command", ""),
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

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 440, 280, 52, 12, 10, 40


@dataclass
class Scatter:
    title: str
    xlabel: str
    ylabel: str
    points: list[dict] = field(default_factory=list)  # {cx, cy, key, cell_id, tip, front, chance, cls}
    front: str = ""  # polyline points
    chance: dict | None = None  # {y, label}: the chance level's line
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = W
    height: int = H
    pad_l: int = PAD_L
    pad_b: int = PAD_B


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


def scatter(title: str, xlabel: str, ylabel: str, pts: Sequence[tuple[float, float, Any]], log: bool,
            lower_x_better: bool, chance: float | None = None) -> Scatter:
    """Accuracy (y) against a cost (x), one point per configuration (`.key`, `.cell_ids`, `.method`,
    `.tip`, `.at_chance`); the front: no point is better on both, among the points above chance."""
    s = Scatter(title, xlabel, ylabel)
    pts = [(x, y, r) for x, y, r in pts if x is not None and x > 0 and y is not None and math.isfinite(y)]
    if not pts:
        return s
    xs, ys = [x for x, _, _ in pts], [y for _, y, _ in pts] + ([chance] if chance is not None else [])
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

    # pareto_front maximises both coordinates: negate the cost where lower is better; chance is no answer
    able = [i for i, (_, _, r) in enumerate(pts) if not r.at_chance]
    front = {able[j] for j in pareto_front([(-pts[i][0] if lower_x_better else pts[i][0], pts[i][1]) for i in able])}
    for i, (x, y, r) in enumerate(pts):
        s.points.append({"cx": px(x), "cy": py(y), "key": r.key, "cell_id": ",".join(r.cell_ids), "front": i in front,
                         "chance": r.at_chance, "cls": r.method,
                         "tip": f"{r.tip} | {xlabel} {x:.3g}" + (" | at chance: not ranked" if r.at_chance else "")})
    line = sorted((pts[i][0], pts[i][1]) for i in front)
    s.front = " ".join(f"{px(x)},{py(y)}" for x, y in line)
    if chance is not None:
        s.chance = {"y": py(chance), "label": f"chance {chance:.1f}"}
    s.xticks = [(px(v), f"{v:g}") for v in _ticks(min(xs), max(xs), log) if lo_x <= v <= hi_x]
    s.yticks = [(py(v), f"{v:g}") for v in _ticks(lo_y, hi_y, False) if lo_y <= v <= hi_y]
    return s


def _by_task(configs: Sequence) -> list[tuple[str, list]]:
    out: dict[tuple[str, str], list] = defaultdict(list)
    for c in configs:
        out[(c.profile, c.task)].append(c)
    keys = sorted(out, key=lambda k: (PROFILE_ORDER.get(k[0], 9), k))
    return [(f"{task} ({profile})", out[(profile, task)]) for profile, task in keys]


def pareto(configs: Sequence) -> list[tuple[str, Scatter, Scatter]]:
    """Per (profile, task): configurations' mean score vs packed compression (log) and vs latency."""
    out = []
    for name, cs in _by_task(configs):
        ylabel = f"{cs[0].metric} (%, mean over seeds)"
        level = cs[0].chance_level
        comp = scatter(f"{name}: score vs packed compression", "packed compression (×, log scale)", ylabel,
                       [(c.compression, c.mean, c) for c in cs], log=True, lower_x_better=False, chance=level)
        lat = scatter(f"{name}: score vs latency", "latency (ms, fastest backend)", ylabel,
                      [(c.latency, c.mean, c) for c in cs], log=False, lower_x_better=True, chance=level)
        out.append((name, comp, lat))
    return out


def best_under_budget(configs: Sequence, cost: str) -> list[tuple[str, list]]:
    """Per (profile, task): the configurations that are the best answer to 'highest mean score with
    `cost` at most X' for some X (cost ascending, score strictly rising), none at chance: the budget
    table without JS."""
    out = []
    for name, cs in _by_task(configs):
        rs = sorted((c for c in cs if getattr(c, cost) is not None and math.isfinite(c.mean) and not c.at_chance),
                    key=lambda c: (getattr(c, cost), -c.mean))
        steps, best = [], -math.inf
        for c in rs:
            if c.mean > best:
                steps.append(c)
                best = c.mean
        if steps:
            out.append((name, steps))
    return out


# ------------------------------------------------------------------ claims per paper

# an Interval.text(): '-1.20 pt [-2.03, -0.41]' (any unit), or its '(no interval)' form
INTERVAL = re.compile(r"[+-]?\d+(?:\.\d+)? ?[^\s\[\],;()]* (?:\[[+-]?\d+(?:\.\d+)?, [+-]?\d+(?:\.\d+)?\]|\(no interval\))")


def claims_by_paper(verdicts: Sequence, titles: dict[str, str]) -> list[tuple[str, str, list[dict]]]:
    """[(paper, title, [verdict dicts + badge class, its intervals, its needs])] in the order the
    papers first appear. `intervals`: the 95% intervals the verdict quotes (from `ours`, where every
    rule prints the difference it judged with its interval); `needs`: what would decide it."""
    papers: dict[str, list[dict]] = {}
    for v in verdicts:
        v = getattr(v, "source", v)  # a transition ClaimRow carries its ClaimVerdict
        d = v.to_dict() if hasattr(v, "to_dict") else dict(v)
        d["badge"] = BADGE.get(d.get("verdict", ""), "notrun")
        d["intervals"] = INTERVAL.findall(str(d.get("ours") or ""))
        d["needs"] = [n if isinstance(n, dict) else {"text": str(n)} for n in d.get("needs") or []]
        papers.setdefault(d.get("paper") or "other", []).append(d)
    return [(p, titles.get(p, p), cs) for p, cs in papers.items()]
