"""Rebuild results/ from MLflow alone: `python -m suite.report [--out DIR]`.

Tables are pure functions of the stored runs; nothing is re-run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from suite.paths import RESULTS_DIR, tracking_uri

COLUMNS = ("model", "task", "sparsity.method", "sparsity.target", "quant.method", "quant.weight_bits",
           "distill.method", "seed")


def load_runs() -> list[dict]:
    """Every FINISHED run of every experiment, flattened to one dict each."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    rows = []
    for exp in mlflow.search_experiments():
        for run in mlflow.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                                      output_format="list"):
            rows.append({"experiment": exp.name, **run.data.params, **run.data.metrics,
                         "cell_id": run.data.tags.get("cell_id", ""), "run_id": run.info.run_id})
    return rows


def cells_table(rows: list[dict]) -> str:
    """One Markdown table per experiment: config columns, eval_primary, compression."""
    out = []
    for experiment in sorted({r["experiment"] for r in rows}):
        out += [f"## {experiment}", "",
                "| " + " | ".join(COLUMNS) + " | eval_primary | sparsity | compression nominal | compression packed |",
                "|" + "---|" * (len(COLUMNS) + 4)]
        for r in sorted((r for r in rows if r["experiment"] == experiment),
                        key=lambda r: tuple(str(r.get(c, "")) for c in COLUMNS)):
            cells = [str(r.get(c, "")) for c in COLUMNS]
            cells += [f"{r.get('eval_primary', float('nan')):.2f}", f"{r.get('sparsity_measured', 0):.3f}",
                      f"{r.get('compression_nominal', float('nan')):.1f}x",
                      f"{r.get('compression_packed', float('nan')):.2f}x"]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out) if out else "No finished runs recorded yet.\n"


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "cells.md"
    path.write_text("# Recorded cells (from MLflow)\n\n" + cells_table(load_runs()))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder (default: results/)")
    args = parser.parse_args()
    print(f"wrote {build(args.out)}")


if __name__ == "__main__":
    main()
