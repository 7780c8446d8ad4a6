"""The report: `python -m suite.report [--out DIR] [--publish] [--merge BOARD...]`.

records (MLflow result.json via load.py, and/or merged leaderboard.json boards)  ->
records.group_cells  ->  tables / claims / plots / leaderboard  ->  a temp dir swapped in whole.
Only `load.py` and `leaderboard.read_board` read stored results; everything else is a function of
what they returned, and nothing here ever re-runs a cell. The default output is the local
runs/results/; the committed results/ is written only by `--publish`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from suite.errors import SparqError
from suite.report.load import Store
from suite.report.publish import EmptyReport, PublishError
from suite.report.records import Cell, Group, group_cells

log = logging.getLogger("sparq.report")
# What the report writes into its folder; anything else there (kernels/) is kept.
OUTPUTS = ("tables.md", "tables", "claims.md", "plots", "leaderboard.json", "leaderboard.schema.json",
           "leaderboard.html", "cell_record.schema.json", "README.md")


SCREENSHOT_SUFFIX = "_screenshot.png"  # plots/ files of `python -m suite.report.screenshots`, kept


MAX_NOTED = 10  # skipped records named one by one in the page's notes


@dataclass
class Report:
    """Everything rendered, in memory (what `write` puts on disk)."""

    groups: list[Group]
    tables: dict[str, str]
    claims_md: str
    verdicts: list  # claims.ClaimVerdict
    board: dict  # leaderboard.json
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown at the top of the page (skipped records, a dirty tree)
    skipped: list = field(default_factory=list)  # validate.Skipped: records left out, and why
    changes: object = None  # publish.Changes against the report this one replaces (--publish)
    smoke_left_out: int = 0  # profile=smoke records kept out of a published report


def collect(uri: str | None, boards: tuple[Path, ...] = (), environment: bool = True,
            kernel_csvs: tuple[Path, ...] = ()) -> tuple[Store, list[str], int]:
    """The records to report: the MLflow store (unless only boards are given and no `uri`), plus
    merged boards, one per cell id + machine. Returns (store, sources, duplicates dropped)."""
    from suite.paths import tracking_uri
    from suite.report import leaderboard
    from suite.report.load import check_store, load_store, parse_kernel_csv

    lists, sources = [], []
    store = Store(uri="")
    if uri is not None or not boards:
        check_store(uri or tracking_uri())  # a report never reads (and so creates) an empty store by mistake
        store = load_store(uri or tracking_uri(), kernel_csvs, environment=environment)
        lists.append([c.record for c in store.cells])
        sources.append("mlflow")
    for path in boards:
        records, skipped = leaderboard.load_board(path)
        for skip in skipped:
            log.warning("sparq: warning: %s", skip.line())
        lists.append(records)
        store.skipped += skipped
        sources.append(leaderboard.source_name(path))
    records, dropped = leaderboard.merge(*lists)
    if store.kernel_source.startswith("/"):  # a CSV path: named relative to the project, host-free
        from suite.paths import ROOT

        src = Path(store.kernel_source)
        store.kernel_source = str(src.relative_to(ROOT)) if src.is_relative_to(ROOT) else src.name
    store.cells = [Cell(record=r) for r in records]
    for c in store.cells:
        if not math.isfinite(c.primary):
            log.warning("sparq: warning: %s has no eval_primary (null): shown as –, left out of plots and means",
                        _named(c))
    if not store.kernel_rows:
        for path in kernel_csvs:
            if path.is_file() and (rows := parse_kernel_csv(path.read_text())):
                store.kernel_rows, store.kernel_source = rows, f"kernels/{path.name}"
                break
    return store, sources, dropped


def with_stage_latency(cells: list[Cell], reports: list[dict]) -> list[Cell]:
    """Cells with the latency stage's ratios (suite/latency, quiet reports only) in `record["latency_stage"]`."""
    if not reports:
        return list(cells)
    from suite.latency.stats import cell_ratios

    ratios = cell_ratios(reports)
    return [Cell({**c.record, "latency_stage": ratios[c.cell_id]}, c.start_time) if c.cell_id in ratios else c
            for c in cells]


def render(store: Store, sources: list[str] | tuple[str, ...] = ("mlflow",)) -> Report:
    """Pure: tables, claims and leaderboard from the loaded store."""
    from suite.report import claims, leaderboard, tables

    groups = group_cells(with_stage_latency(store.cells, store.latency))
    verdicts = claims.verdicts(groups, store.kernel_rows)
    notes = []
    if not any(g.latency() for g in groups):
        notes.append("No latency_ms_* recorded in any cell: no accuracy-vs-latency plot.")
    if not store.kernel_rows:
        notes.append("No kernel benchmark found (MLflow experiment kernels-bench or results/kernels/bench.csv): "
                     "no kernel speedup plot.")
    if missing := [c for c in store.cells if not math.isfinite(c.primary)]:
        notes.append(f"{len(missing)} records have no eval_primary (null, e.g. the Pearson of constant "
                     "predictions): shown as –, left out of plots and means: "
                     + ", ".join(_named(c) for c in missing[:MAX_NOTED])
                     + (f" and {len(missing) - MAX_NOTED} more" if len(missing) > MAX_NOTED else ""))
    warnings = []
    if store.skipped:
        warnings.append(f"{len(store.skipped)} invalid records skipped (not in any table, plot, claim or the board): "
                     + "; ".join(s.line().removeprefix("skipped ") for s in store.skipped[:MAX_NOTED])
                     + (f"; and {len(store.skipped) - MAX_NOTED} more" if len(store.skipped) > MAX_NOTED else ""))
    board = leaderboard.document([c.record for c in store.cells], sources)
    return Report(groups, tables.all_tables(groups), claims.claims_markdown(verdicts), verdicts, board, notes,
                  warnings=warnings, skipped=list(store.skipped))


def _named(cell: Cell) -> str:
    return f"run {cell.run_id or '?'} (cell {cell.cell_id or '?'})"


def check_publishable(report: Report, allow_dirty: bool = False) -> list[str]:
    """Why this board must not become the committed results/ (empty: it may). Records from a
    dirty tree are refused unless `allow_dirty` (the page then flags each of them)."""
    from suite.report.leaderboard import host_leaks

    problems = []
    dirty = [r["cell_id"] for r in report.board["records"] if r.get("git_dirty")]
    if dirty and not allow_dirty:
        problems.append(f"{len(dirty)} records come from a modified tree (git_dirty), e.g. {dirty[0]}: "
                        f"re-run them from a clean commit, or pass --allow-dirty to publish them flagged")
    leaks = host_leaks(json.dumps(report.board))
    if leaks:
        problems.append(f"the board holds host paths or names: {', '.join(leaks[:3])}")
    return problems


def write(report: Report, store: Store, out: Path) -> list[Path]:
    """Render every file into a temp dir beside `out`, then swap it in whole (a reader sees the old
    report or the new one, never half of each). Files of `out` that the report does not write
    (kernels/) are carried over. The swap is two renames under a lock file beside `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        if out.is_dir():
            for entry in out.iterdir():
                if entry.name not in OUTPUTS:
                    (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
            for shot in sorted(out.glob(f"plots/*{SCREENSHOT_SUFFIX}")):  # screenshots.py's, refreshed by --publish
                (tmp / "plots").mkdir(exist_ok=True)
                shutil.copy2(shot, tmp / "plots" / shot.name)
        from suite.paths import RESULTS_DIR

        published = out.resolve() == RESULTS_DIR.resolve()
        written = [out / p.relative_to(tmp) for p in _render_files(report, store, tmp, published)]
        tmp.chmod(0o755)
        old = out.parent / f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        with FileLock(str(out.parent / f".{out.name}.swap.lock")):  # two reports finishing at once
            if out.exists():
                out.rename(old)
            tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


def _render_files(report: Report, store: Store, out: Path, published: bool = False) -> list[Path]:
    from suite.record import schema_text
    from suite.report import html, leaderboard, plots, readme

    written = []

    def put(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)

    all_md = "\n".join(report.tables.values()) or "No finished runs recorded yet.\n"
    put(out / "tables.md", "# Results in the papers' layout (from the cell records)\n\n" + all_md)
    for name, md in report.tables.items():
        put(out / "tables" / f"{plots._slug(name)}.md", md)
    put(out / "claims.md", report.claims_md)

    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(plots, "render_all"):
        figs = plots.render_all(report.groups, store.kernel_rows, store.kernel_source, plot_dir)
    else:
        figs = plots.render_compression(plots.compression_series(report.groups), plot_dir)
        figs += plots.render_latency(plots.latency_series(report.groups), plot_dir)
        figs += plots.render_kernels(plots.kernel_panels(store.kernel_rows), plot_dir, store.kernel_source)
    index = ["# Plots", ""] + [f"- `{f.name}.png` / `.svg`: {f.title}. {f.caption}" for f in figs]
    index += [f"- `leaderboard_<view>{SCREENSHOT_SUFFIX}`: a screenshot of each view of leaderboard.html "
              "(`python -m suite.report.screenshots`, run by `--publish` where a headless Chromium is installed)."]
    index += [""] + [f"- {n}" for n in report.warnings + report.notes]
    put(plot_dir / "README.md", "\n".join(index) + "\n")
    written += [p for f in figs for p in (f.png, f.svg)]

    put(out / "leaderboard.json", json.dumps(report.board, indent=1, allow_nan=False) + "\n")
    put(out / "leaderboard.schema.json", json.dumps(leaderboard.schema(), indent=2, sort_keys=True) + "\n")
    put(out / "cell_record.schema.json", schema_text())
    put(out / "leaderboard.html", html.page(report, figs))
    put(out / "README.md", readme.text(report.board["records"], report.board.get("sources", []),
                                       report.board.get("schema_version", leaderboard.BOARD_VERSION),
                                       len(report.groups), published))
    return written


def build(out: Path, uri: str | None = None, environment: bool = True, boards: tuple[Path, ...] = (),
          publish: bool = False, allow_dirty: bool = False, replace: bool = False) -> list[Path]:
    """Collect, render, write under `out`; the files written."""
    return build_report(out, uri, environment, boards, publish, allow_dirty, replace)[1]


def build_report(out: Path, uri: str | None = None, environment: bool = True, boards: tuple[Path, ...] = (),
                 publish: bool = False, allow_dirty: bool = False, replace: bool = False) -> tuple[Report, list[Path]]:
    """Collect, render, check, write under `out`. With `publish` (see suite/report/publish.py): a
    clean tree unless `allow_dirty`, no profile=smoke record, no published record dropped unless
    `replace`; PublishError otherwise. Without: EmptyReport when a report with no records would
    replace one with records, unless `replace`."""
    from suite.paths import RESULTS_DIR
    from suite.report import publish as pub

    out = Path(out)
    tree_note = None
    if publish:
        why, tree_note = pub.tree_problem(allow_dirty)
        if why:
            raise PublishError(why)
    try:
        previous = pub.previous_records(out)
    except SparqError as e:  # the report there is unreadable: nothing to keep, but say it
        if publish and not replace:
            raise PublishError(f"the current {e}; pass --replace to overwrite it") from None
        log.warning("sparq: warning: replacing an unreadable report: %s", e)
        previous = None
    csvs = tuple(dict.fromkeys([out / "kernels" / "bench.csv", RESULTS_DIR / "kernels" / "bench.csv"]))
    store, sources, _ = collect(uri, tuple(boards), environment, csvs)
    smoke = 0
    if publish:
        kept, smoke = pub.smoke_free([c.record for c in store.cells])
        store.cells = [Cell(record=r) for r in kept]
    report = render(store, sources)
    report.warnings += [n for n in (tree_note,) if n]
    report.smoke_left_out = smoke
    if publish:
        old_verdicts = claims_verdicts(previous or [], store.kernel_rows)
        report.changes = pub.changes(previous or [], report.board["records"], old_verdicts,
                                     pub.verdict_map(report.verdicts))
        problems = check_publishable(report, allow_dirty)
        if (dropping := pub.drop_problem(report.changes, replace)) is not None:
            problems.append(dropping)
        if problems:
            raise PublishError("; ".join(problems), report.changes)
    elif previous and not report.board["records"] and not replace:
        raise EmptyReport(f"the new report has no records ({len(report.skipped)} skipped as invalid) but {out} "
                          f"holds {len(previous)}: kept it; pass --replace to write the empty report")
    return report, write(report, store, out)


def claims_verdicts(records: list[dict], kernel_rows: list[dict]) -> dict[str, str]:
    """claim id -> verdict of a board's records (what the replaced report said)."""
    from suite.report import claims
    from suite.report.publish import verdict_map

    return verdict_map(claims.verdicts(group_cells([Cell(record=r) for r in records]), kernel_rows))
