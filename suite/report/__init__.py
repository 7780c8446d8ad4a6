"""Rebuild results/ from MLflow alone: `python -m suite.report [--out DIR]`.

load (MLflow, kernel bench CSV)  ->  records.group_cells  ->  tables / claims / plots / leaderboard.
Only `load.py` reads stored results; every rendering step is a function of what it returned, and
nothing here ever re-runs a cell.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from suite.report.load import Store, load_store
from suite.report.records import Group, group_cells

OUTPUTS = ("tables.md", "tables", "claims.md", "plots", "leaderboard.json", "leaderboard.schema.json",
           "leaderboard.html")


@dataclass
class Report:
    """Everything rendered, in memory (what `write` puts on disk)."""

    groups: list[Group]
    tables: dict[str, str]
    claims_md: str
    claim_rows: list
    leaderboard: dict
    notes: list[str] = field(default_factory=list)


def safe_uri(uri: str) -> str:
    """The tracking URI without credentials (user:password@)."""
    return re.sub(r"//[^/@]*@", "//", uri)


def render(store: Store) -> Report:
    """Pure: tables, claims and leaderboard records from the loaded store."""
    from suite.report import claims, leaderboard, tables

    groups = group_cells(store.cells)
    rows = claims.evaluate(groups, store.kernel_rows)
    notes = []
    if not any(g.latency() for g in groups):
        notes.append("No latency_ms_* metrics recorded in any cell: no accuracy-vs-latency plot.")
    if not store.kernel_rows:
        notes.append("No kernel benchmark found (MLflow experiment kernels-bench or results/kernels/bench.csv): "
                     "no kernel speedup plot.")
    return Report(groups, tables.all_tables(groups), claims.claims_markdown(rows), rows,
                  leaderboard.document(groups, safe_uri(store.uri)), notes)


def write(report: Report, store: Store, out: Path) -> list[Path]:
    from suite.report import html, leaderboard, plots

    out.mkdir(parents=True, exist_ok=True)
    for name in ("tables", "plots"):  # generated folders: rebuilt from scratch, no stale files
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    written = []

    def put(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)

    all_md = "\n".join(report.tables.values()) or "No finished runs recorded yet.\n"
    put(out / "tables.md", "# Results in the papers' layout (from MLflow)\n\n" + all_md)
    for name, md in report.tables.items():
        put(out / "tables" / f"{plots._slug(name)}.md", md)
    put(out / "claims.md", report.claims_md)

    plot_dir = out / "plots"
    figs = plots.render_compression(plots.compression_series(report.groups), plot_dir)
    figs += plots.render_latency(plots.latency_series(report.groups), plot_dir)
    figs += plots.render_kernels(plots.kernel_series(store.kernel_rows), plot_dir, store.kernel_source)
    index = ["# Plots", ""] + [f"- `{f.name}.png` / `.svg`: {f.title}. {f.caption}" for f in figs]
    index += [""] + [f"- {n}" for n in report.notes]
    put(plot_dir / "README.md", "\n".join(index) + "\n")
    written += [p for f in figs for p in (f.png, f.svg)]

    put(out / "leaderboard.json", json.dumps(report.leaderboard, indent=1, sort_keys=False, allow_nan=False) + "\n")
    put(out / "leaderboard.schema.json", json.dumps(leaderboard.SCHEMA, indent=2) + "\n")
    put(out / "leaderboard.html", html.page(report.leaderboard["records"], report.claim_rows, figs,
                                            report.tables, report.notes, report.leaderboard["generated_from"]))
    return written


def build(out: Path, uri: str | None = None, environment: bool = True) -> list[Path]:
    """Load from MLflow (and the kernel CSV fallback), render, write under `out`."""
    from suite.paths import RESULTS_DIR, tracking_uri

    uri = uri or tracking_uri()
    csvs = tuple(dict.fromkeys([out / "kernels" / "bench.csv", RESULTS_DIR / "kernels" / "bench.csv"]))
    store = load_store(uri, csvs, environment=environment)
    return write(render(store), store, out)
