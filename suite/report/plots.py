"""Figures (matplotlib Agg, PNG + SVG): accuracy vs packed compression with the Pareto front,
accuracy vs measured latency, kernel speedup vs sparsity per backend (one panel per M).

The data each figure shows is computed by pure functions (`*_series`, `pareto_front`); only
`render_*` draws and writes. Every accuracy plot draws its task's chance level (`TaskAxes`, from
suite/report/chance.py) and leaves configurations at chance off its Pareto fronts.
"""

from __future__ import annotations

import io
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suite.report.load import kernel_machine
from suite.report.records import PROFILE_ORDER, Group

MARKERS = {"fp32": "o", "ptq": "s", "qat": "^"}


@dataclass
class Figure:
    name: str  # file stem under plots/
    title: str
    png: Path
    svg: Path
    caption: str = ""


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # config label (legend text, escaped for mathtext)
    series: str  # colour group (sparsity method)
    marker: str  # quant method
    cell_ids: tuple = ()


@dataclass(frozen=True)
class TaskAxes:
    """What the accuracy plots of each (profile, task) show besides the points: the metric eval_primary
    reports (axis title) and the chance level, and which cells are at chance (off every front)."""

    metrics: dict[tuple[str, str], str] = field(default_factory=dict)
    chance: dict[tuple[str, str], float] = field(default_factory=dict)
    chance_cells: frozenset[str] = frozenset()

    def ylabel(self, key: tuple[str, str]) -> str:
        return f"{self.metrics.get(key, 'eval_primary')} (%, mean over seeds)"

    def at_chance(self, p: Point) -> bool:
        return any(c in self.chance_cells for c in p.cell_ids)

    def draw_chance(self, ax, key: tuple[str, str]) -> None:
        level = self.chance.get(key)
        if level is not None:
            ax.axhline(level, color="#c33", lw=1, ls=":", zorder=1,
                       label=f"chance {level:.1f} (constant prediction)")


def _metric(g: Group) -> str:
    """The task metric eval_primary reports ('accuracy', 'f1', ...)."""
    c = g.first
    return next((k for k, v in sorted(c.eval_percent().items()) if abs(v - c.primary) < 1e-6), "eval_primary")


def task_axes(groups: Sequence[Group]) -> TaskAxes:
    from suite.report import chance

    ch = chance.of_groups(groups)
    metrics: dict[tuple[str, str], str] = {}
    for g in groups:
        metrics.setdefault((g.profile, g.task), _metric(g))
    return TaskAxes(metrics, dict(ch.levels), ch.cells)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher x and higher y are better),
    ordered by x."""
    idx = [i for i, (x, y) in enumerate(points) if math.isfinite(x) and math.isfinite(y)]
    front = [i for i in idx if not any(
        points[j][0] >= points[i][0] and points[j][1] >= points[i][1] and points[j] != points[i]
        for j in idx)]
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


def _label(g: Group) -> str:
    text = f"{g.model_label} {g.sparsity_label} {g.bits_label}" + (f" {g.distill_method}" if g.distill_method != "none" else "")
    return text.replace("$", r"\$")


def _keyed(groups: Sequence[Group]) -> dict[tuple[str, str], list[Group]]:
    out: dict[tuple[str, str], list[Group]] = defaultdict(list)
    for g in groups:
        out[(g.profile, g.task)].append(g)
    return dict(sorted(out.items(), key=lambda kv: (PROFILE_ORDER.get(kv[0][0], 9), kv[0])))


def _finite(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def compression_series(groups: Sequence[Group]) -> dict[tuple[str, str], list[Point]]:
    """(profile, task) -> points with both numbers (a cell without a metric is left out, never plotted as NaN)."""
    out = {k: [Point(g.mean("compression_packed"), g.mean(), _label(g), g.sparsity_method, g.quant_method,
                     tuple(g.cell_ids)) for g in gs if _finite(g.mean("compression_packed"), g.mean())]
           for k, gs in _keyed(groups).items()}
    return {k: pts for k, pts in out.items() if pts}


def latency_series(groups: Sequence[Group]) -> dict[tuple[str, str, str], list[Point]]:
    """(profile, task, backend) -> points: latency of each cell on that backend vs accuracy."""
    out: dict[tuple[str, str, str], list[Point]] = defaultdict(list)
    for (profile, task), gs in _keyed(groups).items():
        for g in gs:
            for backend, ms in sorted(g.latency().items()):
                if not _finite(ms, g.mean()) or ms <= 0:
                    continue
                out[(profile, task, backend)].append(Point(ms, g.mean(), _label(g), g.sparsity_method,
                                                           g.quant_method, tuple(g.cell_ids)))
    return dict(out)


def kernel_series(rows: Sequence[dict]) -> dict[str, list[tuple[float, float]]]:
    """backend -> [(sparsity, median speedup over shapes)], sorted by sparsity."""
    acc: dict[tuple[str, float], list[float]] = defaultdict(list)
    for r in rows:
        s, v = r.get("sparsity_value"), r.get("speedup_vs_fp32")
        pattern = r.get("pattern") or ""
        backend = str(r.get("backend", ""))
        if backend.startswith("sparq") and pattern:
            backend = f"{backend} ({pattern})" if pattern not in backend else backend
        if s is not None and v is not None and math.isfinite(v):
            acc[(backend, s)].append(v)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (backend, s), vs in sorted(acc.items()):
        out[backend].append((s, statistics.median(vs)))
    return dict(out)


# ------------------------------------------------------------------ drawing

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "sparq", "figure.dpi": 100, "font.size": 9})
    return plt


def _save(fig, out: Path, name: str, title: str, caption: str = "") -> Figure:
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    fig.savefig(png, bbox_inches="tight", metadata={"Software": None})
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    svg.write_text(buf.getvalue())
    import matplotlib.pyplot as plt

    plt.close(fig)
    return Figure(name, title, png, svg, caption)


def _scatter(ax, points: Sequence[Point]) -> None:
    plt = _plt()
    methods = sorted({p.series for p in points})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    seen = set()
    for p in points:
        key = (p.series, p.marker)
        ax.scatter([p.x], [p.y], color=colours[p.series], marker=MARKERS.get(p.marker, "D"), s=36,
                   label=f"{p.series} / {p.marker}" if key not in seen else None, zorder=3)
        seen.add(key)


def _front(points: Sequence[Point], axes: TaskAxes, lower_x_better: bool = False) -> list[Point]:
    """The Pareto front of the points above chance."""
    able = [p for p in points if not axes.at_chance(p)]
    return [able[i] for i in pareto_front([(-p.x if lower_x_better else p.x, p.y) for p in able])]


def _chance_points(ax, points: Sequence[Point], axes: TaskAxes) -> None:
    low = [p for p in points if axes.at_chance(p)]
    if low:
        ax.scatter([p.x for p in low], [p.y for p in low], marker="x", color="0.55", s=30, zorder=3,
                   label="at chance (off the front)")


def render_compression(series: dict[tuple[str, str], list[Point]], out: Path,
                       axes: TaskAxes | None = None) -> list[Figure]:
    plt = _plt()
    axes = axes or TaskAxes()
    figs = []
    for (profile, task), points in series.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        _scatter(ax, [p for p in points if not axes.at_chance(p)])
        _chance_points(ax, points, axes)
        axes.draw_chance(ax, (profile, task))
        front = _front(points, axes)
        if front:
            ax.plot([p.x for p in front], [p.y for p in front], "k--", lw=1, label="Pareto front", zorder=2)
            for p in front:
                ax.annotate(p.label, (p.x, p.y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("packed compression (×: dense fp32 encoder bytes / packed bytes; log scale)")
        ax.set_ylabel(axes.ylabel((profile, task)))
        ax.set_title(f"{task} ({profile}): accuracy vs packed compression")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        figs.append(_save(fig, out, f"accuracy_vs_compression_{_slug(profile)}_{_slug(task)}",
                          f"{task} ({profile}): accuracy vs packed compression",
                          f"{len(points)} configurations (mean over seeds); dashed: Pareto front (no point is both "
                          "smaller and more accurate), configurations at chance (grey x) left off; dotted red: "
                          "chance level."))
    return figs


def render_latency(series: dict[tuple[str, str, str], list[Point]], out: Path,
                   axes: TaskAxes | None = None) -> list[Figure]:
    plt = _plt()
    axes = axes or TaskAxes()
    figs = []
    by_task: dict[tuple[str, str], dict[str, list[Point]]] = defaultdict(dict)
    for (profile, task, backend), pts in series.items():
        by_task[(profile, task)][backend] = pts
    for (profile, task), backends in by_task.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, (backend, pts) in enumerate(sorted(backends.items())):
            able = [p for p in pts if not axes.at_chance(p)]
            ax.scatter([p.x for p in able], [p.y for p in able], marker="osD^v<>"[i % 7], s=36,
                       label=backend.replace("$", r"\$"), zorder=3)
            front = _front(pts, axes, lower_x_better=True)
            if len(front) > 1:
                ax.plot([p.x for p in front], [p.y for p in front], "--", lw=0.8, alpha=0.6)
        _chance_points(ax, [p for pts in backends.values() for p in pts], axes)
        axes.draw_chance(ax, (profile, task))
        ax.set_xscale("log")
        ax.set_xlabel("encoder latency (ms per call, median; log scale)")
        ax.set_ylabel(axes.ylabel((profile, task)))
        ax.set_title(f"{task} ({profile}): accuracy vs measured latency")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        figs.append(_save(fig, out, f"accuracy_vs_latency_{_slug(profile)}_{_slug(task)}",
                          f"{task} ({profile}): accuracy vs measured latency",
                          "One marker per backend (latency_ms_<backend>); dashed: per-backend Pareto front, "
                          "configurations at chance (grey x) left off; dotted red: chance level."))
    return figs


def kernel_panels(rows: Sequence[dict]) -> dict[tuple[str, int | None], dict[str, list[tuple[float, float]]]]:
    """(machine, M) -> series -> [(sparsity, median speedup over shapes and rounds)]: one panel
    per machine and activation-row count. sparq rows of a run that forced a kernel path
    (``isa`` column) are series of their own ("... [avx2]"); the baselines come from the
    machine's unforced runs when it has any."""
    auto = {kernel_machine(r) for r in rows if (r.get("isa") or "auto") == "auto"}
    acc: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        s, v = r.get("sparsity_value"), r.get("speedup_vs_fp32")
        if s is None or v is None or not math.isfinite(v):
            continue
        machine, isa = kernel_machine(r), r.get("isa") or "auto"
        backend, pattern = str(r.get("backend", "")), r.get("pattern") or ""
        if backend.startswith("sparq"):
            backend = f"{backend} ({pattern})" if pattern and pattern not in backend else backend
            backend += f" [{isa}]" if isa != "auto" else ""
        elif isa != "auto" and machine in auto:
            continue
        m = int(r["m"]) if r.get("m") is not None else None
        acc[(machine, m, backend, s)].append(v)
    out: dict[tuple, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for (machine, m, backend, s), vs in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2], kv[0][3])):
        out[(machine, m)][backend].append((s, statistics.median(vs)))
    return {k: dict(v) for k, v in out.items()}


def render_kernels(panels: dict, out: Path, source: str) -> list[Figure]:
    """One panel per (machine, M): speedup over torch fp32 vs sparsity, one line per backend."""
    if not panels:
        return []
    plt = _plt()
    machines = sorted({k[0] for k in panels})
    ms = sorted({k[1] for k in panels}, key=lambda m: -1 if m is None else m)
    fig, axes = plt.subplots(len(machines), len(ms), figsize=(5.2 * len(ms), 3.9 * len(machines)),
                             squeeze=False)
    names = sorted({b for series in panels.values() for b in series})
    style = {b: ("osD^v<>p*hX"[i % 11], "--" if "[" in b else "-") for i, b in enumerate(names)}
    for i, machine in enumerate(machines):
        for j, m in enumerate(ms):
            ax = axes[i][j]
            series = panels.get((machine, m), {})
            for b, pts in sorted(series.items()):
                pts = sorted(pts)
                mk, ls = style[b]
                ax.plot([p[0] * 100 for p in pts], [p[1] for p in pts], marker=mk,
                        linestyle=ls if len(pts) > 1 else "none", label=b.replace("$", r"\$"))
            ax.axhline(1.0, color="k", lw=0.8, ls=":")
            ys = [p[1] for pts in series.values() for p in pts if p[1] > 0]
            if ys and max(ys) / min(ys) > 20:
                ax.set_yscale("log")
            elif ys:
                ax.set_ylim(bottom=0)
            ax.set_title(f"{machine}" + (f", M = {m} activation row{'' if m == 1 else 's'}"
                                         + (" (batch-1 latency)" if m == 1 else " (a batch)") if m is not None else ""),
                         fontsize=9)
            ax.set_xlabel("weight sparsity (%) (2:4 = 50)", fontsize=8)
            ax.set_ylabel("speedup over torch fp32 (x)", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(True, which="both", alpha=0.3)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="center left",
               bbox_to_anchor=(1.0, 0.5), title="backend (median over shapes)", title_fontsize=7)
    fig.suptitle("kernel speedup vs sparsity, per machine and activation rows M", fontsize=10)
    fig.tight_layout()
    return [_save(fig, out, "kernel_speedup_vs_sparsity", "Kernel speedup vs sparsity, per machine and M",
                  f"From {source}; dashed: sparq with a forced kernel path ([isa]).")]


# ------------------------------------------------------------------ curves (sparsity, budget)

def sparsity_curve_series(groups: Sequence[Group]) -> dict[tuple[str, str], dict]:
    """(profile, task) -> {"dense": (mean, std), "lines": {label: [(sparsity %, mean, std)]}}."""
    from suite.report.curve_tables import curve_label
    from suite.report.curves import sparsity_curves

    out: dict[tuple[str, str], dict] = {}
    for _key, curve in sorted(sparsity_curves(groups).items(), key=lambda kv: str(kv[0])):
        g0, base = curve[0]
        points = [(g.sparsity_target * 100, g.mean(), g.std()) for g, _ in curve if _finite(g.mean())]
        if not points:
            continue
        entry = out.setdefault((g0.profile, g0.task), {"dense": {}, "lines": {}})
        if _finite(base.mean()):
            entry["dense"][f"{base.model_label} @{base.budget}"] = (base.mean(), base.std())
        entry["lines"][curve_label(g0)] = points
    return out


def budget_series(groups: Sequence[Group]) -> dict[tuple[str, str], dict[str, list[tuple[float, float]]]]:
    """(profile, task) -> {arm label: [(steps, Δ to dense at that budget)]} for arms at two or more budgets."""
    from suite.report.curve_tables import arm_label, budget_families

    out: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(dict)
    for fam in budget_families(groups):
        g0 = fam[0][0]
        label = arm_label(g0)
        if all(b is g for g, b in fam):  # the dense baseline itself: its Δ is 0 by definition
            continue
        pts = [(float(g.steps or g.budget_factor), g.mean() - b.mean()) for g, b in fam
               if b is not None and _finite(g.mean() - b.mean(), float(g.steps or g.budget_factor))]
        if len(pts) >= 2:
            out[(g0.profile, g0.task)][label.replace("$", r"\$")] = pts
    return dict(out)


def render_sparsity_curves(series: dict[tuple[str, str], dict], out: Path,
                           axes: TaskAxes | None = None) -> list[Figure]:
    plt = _plt()
    axes = axes or TaskAxes()
    figs = []
    for (profile, task), entry in series.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        axes.draw_chance(ax, (profile, task))
        for i, (label, (mean, std)) in enumerate(sorted(entry["dense"].items())):
            s = std if math.isfinite(std) else 0.0
            ax.axhspan(mean - s, mean + s, color="0.85", zorder=0)
            ax.axhline(mean, color="0.4", lw=1, ls="--", label=f"dense {label}".replace("$", r"\$") if i < 3 else None)
        for i, (label, pts) in enumerate(sorted(entry["lines"].items())):
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                        yerr=[p[2] if math.isfinite(p[2]) else 0.0 for p in pts], marker="osD^v<>p*"[i % 9],
                        capsize=3, label=label.replace("$", r"\$"))
        ax.set_xlabel("sparsity (% of prunable encoder weights; N:M as 1 − N/M)")
        ax.set_ylabel(axes.ylabel((profile, task)))
        ax.set_title(f"{task} ({profile}): accuracy vs sparsity")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        figs.append(_save(fig, out, f"accuracy_vs_sparsity_{_slug(profile)}_{_slug(task)}",
                          f"{task} ({profile}): accuracy vs sparsity",
                          "One line per method (mean ± std over seeds); grey band: the dense baseline's mean ± std; "
                          "dotted red: chance level."))
    return figs


def render_budget(series: dict[tuple[str, str], dict[str, list[tuple[float, float]]]], out: Path) -> list[Figure]:
    plt = _plt()
    figs = []
    for (profile, task), lines in series.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, (label, pts) in enumerate(sorted(lines.items())):
            pts = sorted(pts)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="osD^v<>p*"[i % 9], label=label)
        ax.axhline(0.0, color="k", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ticks = sorted({p[0] for pts in lines.values() for p in pts})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("optimizer steps (budget 1x / 2x / 4x the recipe's)")
        ax.set_ylabel("Δ score to dense at the same budget (points)")
        ax.set_title(f"{task} ({profile}): gap to dense vs training budget")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        figs.append(_save(fig, out, f"delta_vs_budget_{_slug(profile)}_{_slug(task)}",
                          f"{task} ({profile}): gap to dense vs training budget",
                          "Δ to the dense baseline of the same budget (a smaller model: to the largest dense "
                          "model); a line still rising at the right end is a gap still closing."))
    return figs


def render_all(groups: Sequence[Group], kernel_rows: Sequence[dict], kernel_source: str, out: Path) -> list[Figure]:
    """Every figure of the report, in the order the index lists them."""
    axes = task_axes(groups)
    figs = render_compression(compression_series(groups), out, axes)
    figs += render_latency(latency_series(groups), out, axes)
    figs += render_sparsity_curves(sparsity_curve_series(groups), out, axes)
    figs += render_budget(budget_series(groups), out)
    figs += render_kernels(kernel_panels(kernel_rows), out, kernel_source)
    return figs
