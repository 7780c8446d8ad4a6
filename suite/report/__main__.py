"""`python -m suite.report [--out DIR] [--publish] [--merge BOARD...] [--summary EXPERIMENT...]`.

Local by default: the report goes to runs/results/ (git-ignored). `--publish` writes the committed
results/: from a clean tree with records of clean trees (unless --allow-dirty), with no host path, no
profile=smoke record, and no published record dropped (unless --replace); it prints what it adds,
changes and drops (suite/report/publish.py). A local report with no records never replaces one
with records unless --replace. Invalid records are skipped, each named in one line, and counted.
`--merge A/leaderboard.json B/leaderboard.json` builds one board from several machines' boards
(the local MLflow store is added only when --tracking-uri names it).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from suite.errors import Parser, SparqError, cli_errors
from suite.paths import RESULTS_DIR, ROOT

LOCAL_DIR = ROOT / "runs" / "results"


@cli_errors
def main(argv: list[str] | None = None) -> int:
    from suite.report import PublishError, build_report
    from suite.report import summary as summary_mod

    parser = Parser(prog="python -m suite.report",
                    description="Rebuild tables, claims, plots and the leaderboard from the cells' "
                                "result.json records (nothing is re-run).")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: runs/results/, git-ignored; with --publish: results/)")
    parser.add_argument("--publish", action="store_true",
                        help="write the committed results/ (the published reference), from a clean tree; "
                             "shows what it adds, changes and drops; profile=smoke records are never published")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="with --publish: accept a modified tree and records from one (the page says so)")
    parser.add_argument("--replace", action="store_true",
                        help="let the new report drop records of the one it replaces (with --publish: published "
                             "records; without: an empty report over one with records)")
    parser.add_argument("--merge", nargs="+", type=Path, default=[], metavar="BOARD",
                        help="leaderboard.json files to combine (one row per cell id + machine)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db; "
                             "with --merge: read only when given)")
    parser.add_argument("--no-environment", action="store_true", help="(kept for compatibility; records carry it)")
    parser.add_argument("--summary", nargs="*", default=None, metavar="EXPERIMENT",
                        help="print a terminal summary of these MLflow experiments (glob; none: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from suite.paths import HTTP_DEFAULTS

    for key, value in HTTP_DEFAULTS.items():  # an unreachable tracking server: seconds, not minutes
        os.environ.setdefault(key, value)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its retries; the error says it once

    if args.publish and args.out is not None and args.out.resolve() != RESULTS_DIR.resolve():
        parser.error("--publish writes results/; leave out --out")
    out = RESULTS_DIR if args.publish else (args.out or LOCAL_DIR)
    if not args.publish and out.resolve() == RESULTS_DIR.resolve():
        parser.error("results/ is the published reference: write it with --publish")
    missing = [str(p) for p in args.merge if not p.is_file()]
    if missing:
        parser.error(f"--merge: no such file: {missing[0]}")
    try:
        report, written = build_report(out, args.tracking_uri, environment=not args.no_environment,
                                       boards=tuple(args.merge), publish=args.publish, allow_dirty=args.allow_dirty,
                                       replace=args.replace)
    except PublishError as e:
        say_changes(e.changes, f"not published; it would have changed {out}")
        raise SparqError(f"--publish refused: {e}") from None
    if report.smoke_left_out:
        print(f"[sparq] left out {report.smoke_left_out} profile=smoke records (never published)", file=sys.stderr)
    say_changes(report.changes, f"published to {out}")
    skipped = f"; {_records(len(report.skipped))} skipped as invalid (named above)" if report.skipped else ""
    print(f"wrote {len(written)} files under {out}: {len(report.board['records'])} records from "
          f"{', '.join(report.board['sources']) or 'nothing'}{skipped}", file=sys.stderr)
    if args.publish:
        refresh_screenshots(out)
    if args.summary is not None:
        text = summary_mod.text(report.groups, report.verdicts, args.summary, out)
        if args.publish:
            text = text.rsplit("\n", 1)[0] + f"\n[sparq] published: {out}/leaderboard.html"
        if report.skipped:
            text += f"\n[sparq] {_records(len(report.skipped))} skipped as invalid (named above and at the top of the page)"
        print(text)
    return 0


def _records(n: int) -> str:
    return f"{n} record{'' if n == 1 else 's'}"


def say_changes(changes, headline: str) -> None:
    """What a --publish adds, changes and drops (publish.Changes), on stderr."""
    lines = changes.lines() if changes is not None else []
    for i, line in enumerate(lines):
        print(f"[sparq] {headline}: {line}" if i == 0 else f"[sparq] {line}", file=sys.stderr)


def refresh_screenshots(out: Path) -> None:
    """The published page's screenshots (results/plots/*_screenshot.png), or say why they are stale."""
    from suite.report import screenshots

    if why := screenshots.missing():
        print(f"sparq: warning: screenshots in {out / 'plots'} not refreshed ({why}); they show the previous "
              f"page: run python -m suite.report.screenshots where Chromium is installed", file=sys.stderr)
        return
    drv = screenshots.driver()
    try:
        shots = screenshots.shoot(drv, out / "leaderboard.html", out / "plots")
    finally:
        drv.quit()
    print(f"refreshed {len(shots)} screenshots in {out / 'plots'}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
