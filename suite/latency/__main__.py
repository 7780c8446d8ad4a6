"""`python -m suite.latency [--experiment NAME] [--cell ID] [--rounds R] [--batches 1,8]`: time every
recorded compressed cell's exported packed model against its baselines, on an idle machine.

Refuses (exit 2, nothing timed) when the machine is not quiet (suite/quiet.py: other sparq loops
pause, then the CPUs must be idle); `--allow-busy` times anyway and records `quiet: false`.
A cell whose window is not quiet later on is left untimed and said so (exit 3).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from suite.errors import SparqError
from suite.latency import ARTIFACT, EXPERIMENT, CellTiming, LatencyReport, Machine, size_matched
from suite.latency import timing as T

log = logging.getLogger("sparq.latency")


def recorded_cells(uri: str, experiments: list[str]) -> list[dict]:
    """The newest FINISHED record of every cell of the store (all experiments but the latency and
    kernel bench ones), each with run_id and experiment; `experiments` marks the ones to time."""
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    out, seen = [], set()
    for exp in client.search_experiments():
        if exp.name in (EXPERIMENT, "kernels-bench"):
            continue
        for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED' and tags.kind = 'cell'",
                                      order_by=["attributes.start_time DESC"], max_results=5000):
            cid = run.data.tags.get("cell_id")
            if cid in seen:
                continue
            try:
                rec = mlflow.artifacts.load_dict(f"{run.info.artifact_uri.rstrip('/')}/result.json")
            except Exception:  # noqa: BLE001 - a run without its record is not a result
                continue
            seen.add(cid)
            out.append({**rec, "run_id": run.info.run_id, "experiment": exp.name,
                        "selected": not experiments or exp.name in experiments})
    return out


def compressed(rec: dict) -> bool:
    ax = rec.get("axes") or {}
    return ax.get("sparsity_method") != "dense" or ax.get("quant_method") != "fp32"


def machine(threads: int) -> Machine:
    from importlib import metadata

    from kernels import cpu

    versions = {}
    for pkg in ("torch", "onnxruntime", "numba", "transformers"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return Machine(cpu_model=cpu.model_name(), cpu_flags=cpu.cpu_flags_string(), kernel_path=cpu.kernel_path(),
                   threads=threads, versions=versions)


def label(rec: dict) -> str:
    ax = rec.get("axes") or {}
    return f"{ax.get('model')} {ax.get('task')} {ax.get('sparsity_label') or ax.get('sparsity_method')} " \
           f"{ax.get('quant_label') or ax.get('quant_method')} ({ax.get('profile')})"


def time_cell(rec: dict, records: list[dict], a, uri: str) -> CellTiming:
    """Export the cell's packed (and ONNX) model from the store, build the baselines, time them."""
    import kernels
    from kernels.bundle import read_manifest
    from suite.export.__main__ import export_run
    from suite.latency.stats import summarize
    from suite.quiet import QUIET_BUSY, timing_window

    entry = CellTiming(cell_id=rec["cell_id"], run_id=rec["run_id"], experiment=rec.get("experiment"),
                       label=label(rec), quiet=False)
    with tempfile.TemporaryDirectory(prefix="sparq-latency-") as tmp:
        packed_dir = Path(tmp) / "packed"
        export_run(rec["run_id"], "packed", packed_dir, uri)
        manifest = read_manifest(packed_dir)
        entry.packed_format = manifest["packed"].get("format")
        sparq, fp32 = kernels.load_model(packed_dir), kernels.bundle.load_fp32_twin(packed_dir)
        names, outputs = manifest["inputs"], manifest["outputs"]
        models = {T.SPARQ: sparq, T.TORCH_FP32: fp32}
        sessions = {}
        shape = T.inputs_for(names, T.vocab_of(fp32), 1, 16)
        try:
            sessions[T.ORT_INT8_DENSE] = T.ort_dynamic_int8(fp32, shape, outputs, a.threads)
            entry.baselines[T.ORT_INT8_DENSE] = {"what": "the torch fp32 model, ONNX Runtime quantize_dynamic (QInt8)"}
        except Exception as e:  # noqa: BLE001 - ORT missing or export failed: said so
            entry.skipped[T.ORT_INT8_DENSE] = f"{type(e).__name__}: {e}"[:300]
        try:
            export_run(rec["run_id"], "onnx", Path(tmp) / "onnx", uri)
            quant = read_manifest(Path(tmp) / "onnx")["formats"]["onnx"]["quant"]
            if quant != "qdq_int8":
                raise SparqError("the cell is not quantized: its ONNX model is fp32")
            sessions[T.ORT_QDQ] = T.ort_session((Path(tmp) / "onnx" / "model.onnx").read_bytes(), a.threads)
            entry.baselines[T.ORT_QDQ] = {"what": "the cell's own QDQ int8 ONNX (its scales), ONNX Runtime"}
        except SparqError as e:
            entry.skipped[T.ORT_QDQ] = str(e)[:300]
        match = size_matched(rec, records) if a.matched else None
        if match is not None:
            try:
                models[T.MATCHED] = T.matched_model(match)
                entry.baselines[T.MATCHED] = {"cell_id": match["cell_id"], "run_id": match["run_id"],
                                              "label": label(match)}
            except Exception as e:  # noqa: BLE001
                entry.skipped[T.MATCHED] = f"{type(e).__name__}: {e}"[:300]
        elif a.matched:
            entry.skipped[T.MATCHED] = "no smaller dense fp32 cell of this task and profile within 1.1x its nonzero weights"
        busy, others_max, quiet = [], 0.0, True
        for batch in a.batches:
            inputs = T.inputs_for(names, T.vocab_of(fp32), batch, a.seq)
            calls = {n: T.torch_call(m, inputs) for n, m in models.items()}
            calls.update({n: T.ort_call(s, inputs) for n, s in sessions.items()})
            for fn in calls.values():  # compile and warm up outside the quiet window
                fn()
            with timing_window(a.settle) as q:
                busy.append(q.busy)
                if not q.quiet and not a.allow_busy:
                    entry.skipped["*"] = f"machine busy ({q.busy:.0%} of the CPUs after {q.waited_s:.0f} s): not timed"
                    quiet = False
                    break
                times, others = T.time_rounds(calls, a.rounds, a.min_time, warmup_s=a.warmup)
            shares = [o for o in others if isinstance(o, float)]
            others_max = max([others_max, *shares])
            quiet = quiet and q.quiet and all(o < QUIET_BUSY for o in shares)
            entry.results[f"b{batch}_s{a.seq}"] = {**summarize(times, T.SPARQ), "rounds": times, "others_busy": others}
    entry.quiet = quiet and bool(entry.results)
    entry.cpu_busy = max((b for b in busy if b is not None), default=None)
    entry.others_busy_max = others_max
    return entry


def print_cell(entry: CellTiming) -> None:
    print(f"\n{entry.label}  cell {entry.cell_id}  {entry.packed_format}  quiet={entry.quiet}")
    for shape, res in entry.results.items():
        for name, iv in sorted(res["ratios"].items()):
            print(f"  {shape:10s} {name:34s} {iv['median']:6.2f}x  [{iv['lo']:.2f}, {iv['hi']:.2f}]  "
                  f"(n={iv['n']}, {iv['coverage']:.0%})")
    for name, why in entry.skipped.items():
        print(f"  {name}: not timed: {why}")


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m suite.latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", action="append", default=[], help="MLflow experiment(s) to time (default: all)")
    ap.add_argument("--cell", action="append", default=[], help="cell id (prefix) to time; repeatable")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--min-time", type=float, default=0.25, help="seconds per backend per round")
    ap.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per backend before the rounds")
    ap.add_argument("--batches", default="1", help="batch sizes, comma-separated")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--settle", type=float, default=None, help="seconds to wait for idle CPUs (suite.quiet)")
    ap.add_argument("--allow-busy", action="store_true", help="time on a busy machine (recorded quiet: false)")
    ap.add_argument("--no-matched", dest="matched", action="store_false", help="skip the size-matched dense model")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the report here (JSON)")
    a = ap.parse_args(argv)
    try:
        a.batches = [int(b) for b in a.batches.split(",")]
    except ValueError:
        ap.error(f"--batches: {a.batches!r} is not a comma-separated list of integers")
    if a.rounds < 1 or a.threads < 1 or a.seq < 1 or min(a.batches) < 1 or a.min_time <= 0:
        ap.error("--rounds, --threads, --seq, --batches must be >= 1 and --min-time > 0")
    return a


def main(argv: list[str] | None = None) -> int:
    from suite.paths import tracking_uri
    from suite.quiet import MAX_SETTLE_S, timing_window

    a = parse(argv)
    a.settle = MAX_SETTLE_S if a.settle is None else a.settle
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = a.tracking_uri or tracking_uri()
    try:
        records = recorded_cells(uri, a.experiment)
        targets = [r for r in records if r["selected"] and compressed(r)
                   and (not a.cell or any(r["cell_id"].startswith(c) for c in a.cell))]
        if not targets:
            raise SparqError(f"no recorded compressed cell matches in {uri} (experiments: "
                             f"{', '.join(a.experiment) or 'all'}; cells: {', '.join(a.cell) or 'all'})")
        T.set_threads(a.threads)
        with timing_window(a.settle) as q:  # refuse before anything is loaded or logged
            if not q.quiet and not a.allow_busy:
                raise SparqError(f"machine busy: {q.busy:.0%} of the CPUs after {q.waited_s:.0f} s; nothing timed "
                                 "(--allow-busy records timings flagged quiet: false)")
    except SparqError as e:
        print(f"sparq: error: {e}", file=sys.stderr)
        return 2
    report = LatencyReport(started=time.time(), machine=machine(a.threads),
                           settings={"rounds": a.rounds, "min_time_s": a.min_time, "warmup_s": a.warmup,
                                     "batches": a.batches,
                                     "seq": a.seq, "interleaved": "rounds, order rotated"})
    print(f"cpu: {report.machine.cpu_model} | {report.machine.cpu_flags}\nkernel path: "
          f"{report.machine.kernel_path}  threads: {a.threads}  cells: {len(targets)}")
    import mlflow

    from suite.tracking import setup_mlflow

    os.environ["MLFLOW_TRACKING_URI"] = uri
    setup_mlflow(EXPERIMENT)
    with mlflow.start_run(run_name=f"latency {time.strftime('%Y-%m-%d %H:%M')}", tags={"kind": "latency"}) as run:
        report.run_id = run.info.run_id
        mlflow.log_params({k: str(v) for k, v in report.settings.items()})
        for rec in targets:
            entry = time_cell(rec, records, a, uri)
            report.cells.append(entry)
            print_cell(entry)
        data = report.model_dump()
        mlflow.log_dict(data, ARTIFACT)
        mlflow.set_tags({"quiet": str(all(c.quiet for c in report.cells)).lower(), "cells": str(len(report.cells)),
                         "cpu_model": report.machine.cpu_model or "", "kernel_path": report.machine.kernel_path or ""})
        mlflow.log_metrics({f"{c.cell_id}.{shape}.{name}": iv["median"] for c in report.cells
                            for shape, res in c.results.items() for name, iv in res["ratios"].items()})
    if a.out:
        a.out.write_text(json.dumps(data, indent=1))
    print(f"\nlatency run {report.run_id} in {EXPERIMENT} ({uri})")
    return 3 if any("*" in c.skipped for c in report.cells) else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    raise SystemExit(main())
