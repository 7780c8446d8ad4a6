"""``python -m kernels.bench.publish RUN.csv [RUN.csv ...] --into results/kernels/bench.csv``:
merge bench runs into the published CSV that keeps every machine's rows.

Each row names its machine (``machine``: "<CPU model> (<LLVM CPU name>)", filled in from
``cpu_flags`` for rows written before the column existed) and how its kernel path was picked
(``isa``: "auto", or the path ``SPARQ_KERNEL_ISA`` forced). A run replaces the published rows of
the same (machine, isa, threads) and keeps all others, so the Zen 3 rows stay beside a Xeon's.
Works for the layer bench (``bench.csv``) and the end-to-end one (``bench_model.csv``).
"""

from __future__ import annotations

import argparse
import csv
import os

from suite.report.load import kernel_machine as machine_of


def _read(path: str) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        rd = csv.DictReader(fh)
        rows = list(rd)
        return list(rd.fieldnames or []), rows


def _key(row: dict) -> tuple:
    return machine_of(row), row.get("isa") or "auto", str(row.get("threads", ""))


def merge(published: list[dict], runs: list[dict]) -> list[dict]:
    """The published rows without those of the runs' (machine, isa, threads), then the runs'
    rows; every row with ``machine`` and ``isa`` filled in."""
    replaced = {_key(r) for r in runs}
    out = [r for r in published if _key(r) not in replaced] + list(runs)
    return [{**r, "machine": machine_of(r), "isa": r.get("isa") or "auto"} for r in out]


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(prog="python -m kernels.bench.publish", description=__doc__)
    ap.add_argument("runs", nargs="+", help="CSVs written by python -m kernels.bench [--model]")
    ap.add_argument("--into", required=True, help="the published CSV (created if missing)")
    a = ap.parse_args(argv)
    columns, published = _read(a.into) if os.path.exists(a.into) else ([], [])
    runs = []
    for path in a.runs:
        cols, rows = _read(path)
        columns += [c for c in cols if c not in columns]
        runs += rows
    columns += [c for c in ("machine", "isa") if c not in columns]
    rows = merge(published, runs)
    os.makedirs(os.path.dirname(os.path.abspath(a.into)), exist_ok=True)
    with open(a.into, "w", newline="") as fh:
        wr = csv.DictWriter(fh, columns, restval="")
        wr.writeheader()
        wr.writerows(rows)
    machines = sorted({(r["machine"], r["isa"]) for r in rows})
    print(f"wrote {a.into}: {len(rows)} rows; " + "; ".join(f"{m} [{i}]" for m, i in machines))
    return a.into


if __name__ == "__main__":
    main()
