"""`python -m suite.report [--out DIR] [--tracking-uri URI]`: rebuild results/ from MLflow."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from suite.paths import RESULTS_DIR


def main(argv: list[str] | None = None) -> None:
    from suite.report import build

    parser = argparse.ArgumentParser(prog="python -m suite.report",
                                     description="Rebuild tables, claims, plots and the leaderboard from MLflow "
                                                 "alone (nothing is re-run).")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder (default: results/)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db)")
    parser.add_argument("--no-environment", action="store_true",
                        help="skip reading each run's environment.json artifact (faster)")
    parser.add_argument("--summary", nargs="*", default=None, metavar="EXPERIMENT",
                        help="print a terminal summary of these MLflow experiments")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    written = build(args.out, args.tracking_uri, environment=not args.no_environment)
    print(f"wrote {len(written)} files under {args.out}")


if __name__ == "__main__":
    main()
