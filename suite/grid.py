"""Grids that run like a benchmark farm: per-cell status records, progress with ETA, a summary.

A grid is a Hydra multirun (`python -m suite.run -m +experiment=NAME`): the sweep lives in the
experiment config (`hydra.sweeper.params`) and any launcher runs it (basic, joblib, submitit).
`GridCallback` (registered in conf/config.yaml) is the farm's bookkeeping:

- `on_multirun_start` (main process) expands the sweep the way the basic sweeper does and writes
  `<sweep dir>/.grid/plan.json` (number of cells, start time, parallelism);
- `on_job_end` (wherever the job runs: in process, a joblib worker, a submitit job) writes the
  cell's record `<sweep dir>/.grid/job-<num>.json` and prints one progress line (bar, done /
  skipped / failed / remaining, ETA) counted from the records, so it works across processes and
  hosts sharing the sweep dir;
- `on_multirun_end` (main process) prints the summary, writes `<sweep dir>/grid_summary.json`,
  and `exit_code()` turns any failed or missing cell into a non-zero exit of `suite.run`.

Cells never stop the grid: in multirun `suite.run.main` returns a FAILED record instead of
raising (the MLflow run is already FAILED with its error). `python -m suite.grid SWEEP_DIR`
prints the summary of a finished or running sweep.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from suite.errors import Parser, SparqError, cli_errors
from suite.lifecycle import Modifier
from suite.sweep import expand_sweep

log = logging.getLogger("sparq.grid")

STATE_DIR = ".grid"
SUMMARY_FILE = "grid_summary.json"
# Module state on purpose: hydra.main returns nothing from a multirun, so the callback that sees
# the summary in the main process leaves it here for `exit_code()` (cli) to read.
LAST_SUMMARY: dict[str, Any] | None = None  # set by on_multirun_end in the main process


# ---------------------------------------------------------------- run-mode helpers

def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def launcher_parallelism(launcher: Any) -> int:
    """How many cells run at once on this machine under a launcher config (1 for sequential)."""
    if launcher is None:
        return 1
    target = str(launcher.get("_target_", ""))
    if "joblib" in target.lower():
        n = int(launcher.get("n_jobs") or -1)
        return available_cores() if n < 0 else max(1, n)
    if "submitit" in target.lower() and "Local" in target:
        return max(1, int(launcher.get("tasks_per_node") or 1) * int(launcher.get("array_parallelism") or 1))
    return 1


def auto_threads(dcfg: DictConfig) -> int:
    """Threads per cell when `threads=0`: cores // parallel cells, so parallel cells never
    oversubscribe the CPU (joblib n_jobs; submitit cpus_per_task; otherwise all cores)."""
    if int(dcfg.get("threads") or 0) > 0:
        return int(dcfg.threads)
    cores = available_cores()
    if not is_multirun():
        from suite.distributed import local_processes

        return max(1, cores // local_processes())  # torchrun: the cell's processes on this machine
    from hydra.core.hydra_config import HydraConfig

    launcher = HydraConfig.get().launcher
    if "submitit" in str(launcher.get("_target_", "")).lower() and launcher.get("cpus_per_task"):
        return max(1, min(cores, int(launcher.cpus_per_task)))  # SLURM: what the job was given
    return max(1, cores // launcher_parallelism(launcher))


def behave_as_main_process() -> None:
    """A joblib (loky) worker runs one cell at a time, like the main process; but libraries that
    look at the process name take it for a DataLoader worker (transformers' seeded MLM collator
    then raises). Name it MainProcess so a cell computes exactly what it computes sequentially."""
    import multiprocessing

    process = multiprocessing.current_process()
    if process.name != "MainProcess" and "Loky" in process.name:
        process.name = "MainProcess"


def failed_record(dcfg: DictConfig, error: BaseException) -> dict[str, Any]:
    """The job result of a cell that raised: status FAILED, its error, its cell id if computable."""
    cid = None
    try:
        from suite.config import validate
        from suite.tracking import cell_id

        cid = cell_id(validate(dcfg))
    except Exception:  # noqa: BLE001 - a config that does not validate has no cell id
        pass
    return {"status": "FAILED", "cell_id": cid, "run_id": None, "metrics": {},
            "error": f"{type(error).__name__}: {error}"[:2000]}


# ---------------------------------------------------------------- the sweep plan

def _state_dir(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / STATE_DIR


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def read_plan(sweep_dir: str | Path) -> dict[str, Any]:
    try:
        plan = json.loads((_state_dir(sweep_dir) / "plan.json").read_text())
    except (OSError, ValueError):
        return {}
    return plan if isinstance(plan, dict) else {}


def read_records(sweep_dir: str | Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(_state_dir(sweep_dir).glob("job-*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return sorted(records, key=lambda r: r.get("job", 0))


# ---------------------------------------------------------------- progress and summary

def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def counts(records: list[dict], total: int | None) -> dict[str, int]:
    c = {"done": 0, "skipped": 0, "failed": 0}
    for r in records:
        c[{"FINISHED": "done", "SKIPPED": "skipped"}.get(r.get("status"), "failed")] += 1
    c["remaining"] = max(0, (total or len(records)) - len(records))
    return c


def eta_seconds(records: list[dict], remaining: int, parallel: int) -> float | None:
    """Remaining cells x mean wall time of the cells that ran (skips are free) / parallel."""
    if remaining == 0:
        return 0.0
    ran = [r["seconds"] for r in records if r.get("status") != "SKIPPED" and r.get("seconds")]
    if not ran:
        return None
    return remaining * (sum(ran) / len(ran)) / max(1, parallel)


def progress_line(plan: dict, records: list[dict], width: int = 24) -> str:
    total = plan.get("total") or len(records)
    c = counts(records, total)
    n = len(records)
    filled = int(width * n / total) if total else width
    bar = "#" * filled + "." * (width - filled)
    elapsed = time.time() - plan["start"] if "start" in plan else None
    from suite.grid_eta import calibrated_eta

    eta = calibrated_eta(plan.get("prior_seconds"), records, plan.get("parallel", 1))
    if eta is None or c["remaining"] == 0:
        eta = eta_seconds(records, c["remaining"], plan.get("parallel", 1))
    return (f"[grid {plan.get('experiment', '')}] |{bar}| {n}/{total} cells: done {c['done']}, "
            f"skipped {c['skipped']}, failed {c['failed']}, remaining {c['remaining']} "
            f"[elapsed {_fmt_seconds(elapsed)}, eta {_fmt_seconds(eta)}]")


def summarize(sweep_dir: str | Path) -> dict[str, Any]:
    plan, records = read_plan(sweep_dir), read_records(sweep_dir)
    total = plan.get("total") or len(records)
    c = counts(records, total)
    ran = [r for r in records if r.get("status") == "FINISHED"]
    reused = sum(1 for r in ran if r.get("metrics", {}).get("teacher_reused") == 1.0)
    trained = sum(1 for r in ran if r.get("metrics", {}).get("teacher_reused") == 0.0)
    # No end recorded: a sweep killed (or still running) is timed to its last cell record, not to now.
    last = max((p.stat().st_mtime for p in _state_dir(sweep_dir).glob("job-*.json")), default=None)
    end = plan.get("end") or last
    return {"sweep_dir": str(sweep_dir), "experiment": plan.get("experiment"), "total": total, **c,
            "teacher_reused": reused, "teacher_trained": trained,
            "wall_seconds": end - plan["start"] if "start" in plan and end else None,
            "ended": "end" in plan, "cells": records}


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"[grid {s.get('experiment') or ''}] summary: {s['total']} cells: done {s['done']}, "
             f"skipped {s['skipped']}, failed {s['failed']}, missing {s['remaining']}; teacher "
             f"reused {s['teacher_reused']}x, trained {s['teacher_trained']}x; wall "
             f"{_fmt_seconds(s.get('wall_seconds'))}"
             + ("" if s.get("ended", True) else " to its last cell (no end recorded: stopped or still running)")]
    for r in s["cells"]:
        primary = r.get("metrics", {}).get("eval_primary")
        what = f"eval_primary={primary:.2f}" if isinstance(primary, (int, float)) else (r.get("error") or "")
        lines.append(f"  {r.get('status', '?'):8s} #{r.get('job')} {r.get('cell_id') or '-':16s} "
                     f"{' '.join(r.get('overrides', []))}  {what}")
    return "\n".join(lines)


def exit_code(summary: dict[str, Any] | None = None) -> int:
    """1 when a grid had failed or missing cells, else 0 (no grid ran: 0)."""
    s = summary if summary is not None else LAST_SUMMARY
    if not s:
        return 0
    return 1 if (s["failed"] or s["remaining"]) else 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class GridCallback(Callback):
    """Hydra callback: records, progress and summary of a multirun (see the module docstring)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST_SUMMARY
        LAST_SUMMARY = None
        try:
            jobs = expand_sweep(config)
        except Exception as e:  # noqa: BLE001 - progress must never break a grid
            log.debug("could not expand the sweep: %s", e)
            jobs = None
        parallel = launcher_parallelism(config.hydra.get("launcher"))
        plan = {"experiment": config.get("experiment_name"), "total": len(jobs) if jobs else None,
                "start": time.time(), "parallel": parallel,
                "launcher": str(config.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1]}
        paper = None
        try:  # an ETA from the start: priors from measured cell times (suite/grid_eta.py)
            from suite import grid_eta

            if jobs and grid_eta.is_paper_scale(config):  # compute: GPU-hours and core-hours, then a prior
                flops = grid_eta.paper_flops(jobs, config)  # per cell in seconds at this cell's threads
                paper = grid_eta.paper_line(str(config.get("experiment_name")), len(jobs), flops)
                rate = grid_eta.core_flops() * max(1, available_cores() // parallel)
                plan["prior_seconds"] = [(f or 0.0) / rate for f in flops]
            else:
                plan["prior_seconds"] = grid_eta.grid_prior(jobs, config.profile.get("train_samples")) if jobs else None
        except Exception as e:  # noqa: BLE001 - progress must never break a grid
            log.debug("no prior ETA: %s", e)
        _write_json(_state_dir(config.hydra.sweep.dir) / "plan.json", plan)
        if paper:
            _say(f"[grid] {paper}")
        priors = plan.get("prior_seconds")
        guess = f", about {_fmt_seconds(sum(priors) / max(1, parallel))} (cell_seconds.yaml)" if priors else ""
        _say(f"[grid {plan['experiment']}] {plan['total'] or '?'} cells, {plan['launcher']}, "
             f"{parallel} at a time{guess}; sweep dir {config.hydra.sweep.dir}")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not is_multirun():
            return
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import JobStatus

        hc = HydraConfig.get()
        value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        if isinstance(value, dict) and "status" in value:
            record = dict(value)
        elif job_return.status == JobStatus.COMPLETED:
            record = {"status": "FAILED", "error": f"job returned {value!r}, not a cell record"}
        else:
            err = job_return._return_value
            record = {"status": "FAILED", "error": f"{type(err).__name__}: {err}"[:2000]}
        record.update({"job": int(hc.job.num), "overrides": list(job_return.overrides or []),
                       "seconds": record.get("seconds"), "host": os.uname().nodename})
        sweep_dir = hc.sweep.dir
        _write_json(_state_dir(sweep_dir) / f"job-{int(hc.job.num):05d}.json", record)
        _say(progress_line(read_plan(sweep_dir), read_records(sweep_dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST_SUMMARY
        plan = read_plan(config.hydra.sweep.dir)
        if plan:
            _write_json(_state_dir(config.hydra.sweep.dir) / "plan.json", {**plan, "end": time.time()})
        summary = summarize(config.hydra.sweep.dir)
        _write_json(Path(config.hydra.sweep.dir) / SUMMARY_FILE, summary)
        LAST_SUMMARY = summary
        _say(format_summary(summary))


# ---------------------------------------------------------------- test hooks (debug.*)

class DebugHooks(Modifier):
    """`debug.nan_at_step` poisons the loss at that step (the loop then raises, the cell FAILS);
    `debug.step_sleep` sleeps and prints `sparq-debug: step N` per step (tests kill mid-training).
    Test hooks only: off by default, never part of a real result."""

    def __init__(self, nan_at_step: int | None, step_sleep: float):
        self.nan_at_step, self.step_sleep = nan_at_step, step_sleep

    def loss(self, model, batch, outputs, task_loss, state):
        if self.nan_at_step is not None and state.step >= self.nan_at_step:
            return task_loss * float("nan")
        return task_loss

    def on_step_end(self, model, state) -> None:
        if self.step_sleep:
            print(f"sparq-debug: step {state.step}", file=sys.stderr, flush=True)
            time.sleep(self.step_sleep)


def debug_modifiers(debug: Any) -> list[Modifier]:
    if debug is None or (debug.nan_at_step is None and not debug.step_sleep):
        return []
    return [DebugHooks(debug.nan_at_step, debug.step_sleep)]


def parser():
    import argparse

    p = Parser(  # a usage error is one `sparq: error:` line (suite.errors)
        prog="python -m suite.grid",
        description="Summaries of Hydra grid sweeps (suite.run -m), or the time of grids before they run.",
        epilog="examples:\n  python -m suite.grid multirun/prune_ofa-quick/<time>\n"
               "  python -m suite.grid --estimate prune_ofa sparsity_curves\n"
               "  python -m suite.grid --estimate prune_ofa_full   (paper scale: GPU-hours and core-hours)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="+", metavar="SWEEP_DIR|EXPERIMENT",
                   help="sweep dirs (multirun/<experiment>-<profile>/<time>); with --estimate, experiment names "
                        "of conf/experiment/")
    p.add_argument("--estimate", action="store_true",
                   help="print each grid's cells and estimated time (quick grids: wall time on SPARQ_JOBS "
                        "workers; paper-scale grids: core-hours and GPU-hours), run nothing")
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """`python -m suite.grid SWEEP_DIR...`: each sweep's summary, then the totals of all of them."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.estimate:
        return print_estimate(args.targets)
    for d in args.targets:
        if not _state_dir(d).is_dir():
            raise SparqError(f"{d}: not a sweep dir (no {STATE_DIR}/ with its plan and cell records)")
    summaries = [summarize(d) for d in args.targets]
    for s in summaries:
        print(format_summary(s))
    if len(summaries) > 1:
        keys = ("total", "done", "skipped", "failed", "remaining", "teacher_reused", "teacher_trained")
        t = {k: sum(s[k] for s in summaries) for k in keys}
        print(f"[grid] all {len(summaries)} sweeps: {t['total']} cells: done {t['done']}, skipped "
              f"{t['skipped']}, failed {t['failed']}, missing {t['remaining']}; teacher reused "
              f"{t['teacher_reused']}x, trained {t['teacher_trained']}x")
    return max(exit_code(s) for s in summaries)


def print_estimate(experiments: list[str]) -> int:
    """The prior time of whole grids (`./reproduce.sh all` prints it first): an upper bound, since
    cells shared between grids and cached teachers are skipped when they run."""
    from suite.grid_eta import estimates, paper_line
    from suite.paths import CONF_DIR

    for name in experiments:
        if not (CONF_DIR / "experiment" / f"{name}.yaml").is_file():
            allowed = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
            raise SparqError(f"--estimate: unknown experiment '{name}'; allowed: {', '.join(allowed)}")
    jobs = os.environ.get("SPARQ_JOBS") or "2"
    if not jobs.isdigit() or int(jobs) < 1:
        raise SparqError(f"SPARQ_JOBS: '{jobs}' is not a positive integer")
    parallel = int(jobs)
    rows, paper = estimates(experiments, parallel)
    for name, cells, seconds in rows:
        print(f"[grid] {name}: {cells} cells, about {_fmt_seconds(seconds)}", file=sys.stderr)
    if len(rows) > 1:
        print(f"[grid] all {len(rows)} grids: {sum(r[1] for r in rows)} cells, at most about "
              f"{_fmt_seconds(sum(r[2] for r in rows))} on {parallel} workers (cells shared between grids "
              f"run once)", file=sys.stderr)
    for name, cells, flops in paper:  # paper scale: compute in GPU-hours and core-hours
        print(f"[grid] {paper_line(name, cells, flops)}", file=sys.stderr)
    if len(paper) > 1:
        total = paper_line(f"all {len(paper)} paper-scale grids", sum(r[1] for r in paper),
                           [f for r in paper for f in r[2]])
        print(f"[grid] {total}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
