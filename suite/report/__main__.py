"""`python -m suite.report [--out DIR] [--publish] [--merge BOARD...] [--summary EXPERIMENT...]`.

Local by default: the report goes to runs/results/ (git-ignored). `--publish` writes the committed
results/ and refuses records from a dirty tree (unless --allow-dirty) or holding host paths.
`--merge A/leaderboard.json B/leaderboard.json` builds one board from several machines' boards
(the local MLflow store is added only when --tracking-uri names it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from suite.paths import RESULTS_DIR, ROOT

LOCAL_DIR = ROOT / "runs" / "results"


def main(argv: list[str] | None = None) -> int:
    from suite.report import PublishError, build_report
    from suite.report import summary as summary_mod

    parser = argparse.ArgumentParser(prog="python -m suite.report",
                                     description="Rebuild tables, claims, plots and the leaderboard from the cells' "
                                                 "result.json records (nothing is re-run).")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default: {LOCAL_DIR.relative_to(ROOT)}/, git-ignored; "
                             f"with --publish: {RESULTS_DIR.relative_to(ROOT)}/)")
    parser.add_argument("--publish", action="store_true",
                        help="write the committed results/ (the published reference)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="with --publish: accept records from a modified tree (flagged on the page)")
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
                                       boards=tuple(args.merge), publish=args.publish, allow_dirty=args.allow_dirty)
    except PublishError as e:
        print(f"sparq: error: --publish refused: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files under {out}: {len(report.board['records'])} records from "
          f"{', '.join(report.board['sources']) or 'nothing'}", file=sys.stderr)
    if args.publish:
        refresh_screenshots(out)
    if args.summary is not None:
        text = summary_mod.text(report.groups, report.verdicts, args.summary, out)
        if args.publish:
            text = text.rsplit("\n", 1)[0] + f"\n[sparq] published: {out}/leaderboard.html"
        print(text)
    return 0


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
