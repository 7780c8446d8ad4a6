"""One lifecycle for every recorded stage (cell, teacher, upstream): `recorded_run`.

    with recorded_run(cfg, kind="cell", cell_id=cid, experiment=exp, params=p, tags=t,
                      skip_finished=not cfg.force) as run:
        if run.existing is not None:      # recorded before (checked under the cell's lock)
            return ...
        metrics, tags = compute()
        run.finish(record, metrics, tags)

What it guarantees:
- one run per cell id at a time: a file lock per cell (`<cache>/locks/`), so the second of two
  identical cells waits, then finds the first one's FINISHED run and skips;
- the MLflow run is tagged (cell_id, kind, suite.version, git_sha, host, pid, heartbeat) and
  gets its params, `config.yaml` and `environment.json`; a daemon thread refreshes the
  `heartbeat` tag, so a run left RUNNING by SIGKILL is closed by the next run that sees it, from
  any host (suite/tracking.py `orphan_reason`);
- `finish` writes the record to the local spool (`<cache>/spool/<run id>.json`) first, MLflow
  after; when MLflow fails there the run raises `TrackingLost` (one line naming the spooled file,
  within seconds) and `python -m suite.sync` uploads it later;
- an exception marks the run FAILED with an `error` tag; SIGTERM / SIGINT mark it KILLED with the
  reason, remove this process's `*.tmp<pid>` files, release the locks, and exit 128 + signal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.errors import SparqError
from suite.paths import cache_dir

log = logging.getLogger("sparq")

TMP_PATTERN = re.compile(r"\.tmp(\d+)$")  # atomic writes in the cache: <name>.tmp<pid>
STALE_TMP_SECONDS = 60.0


class TrackingLost(SparqError):
    """MLflow failed while recording a finished stage; the record is safe in the spool."""


class Killed(SystemExit):
    """SIGTERM / SIGINT inside a recorded run: exits 128 + signal once the run is marked KILLED."""

    def __init__(self, signum: int):
        self.signum, self.reason = signum, f"{signal.Signals(signum).name} received"
        super().__init__(128 + signum)


def _as_dict(record: Any) -> dict:
    """A CellRecord (pydantic v2 model or dataclass) or a plain dict, as JSON-ready data."""
    if hasattr(record, "model_dump"):
        return record.model_dump(mode="json")
    import dataclasses

    if dataclasses.is_dataclass(record):
        return dataclasses.asdict(record)
    return dict(record)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- files and locks

def clean_tmp(root: Path, *, own: bool = False) -> list[Path]:
    """Remove `*.tmp<pid>` files under `root`: this process's (`own`), else those whose process
    is gone on this host and that nobody wrote to for a minute (a half-written teacher save)."""
    from suite.procs import pid_alive

    removed = []
    if not root.is_dir():
        return removed
    for path in root.rglob("*.tmp*"):
        found = TMP_PATTERN.search(path.name)
        if not found or not path.is_file():
            continue
        pid = int(found.group(1))
        try:
            if own:
                stale = pid == os.getpid()
            else:
                stale = pid != os.getpid() and not pid_alive(pid) \
                    and time.time() - path.stat().st_mtime > STALE_TMP_SECONDS
            if stale:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    if removed:
        log.info("removed %d leftover temporary file(s) under %s", len(removed), root)
    return removed


@contextlib.contextmanager
def cell_lock(cache: Path, kind: str, cell_id: str) -> Iterator[None]:
    """Exclusive lock of one cell id (filelock; the OS drops it when its process dies)."""
    from filelock import FileLock, Timeout

    path = cache / "locks" / f"{kind}-{cell_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("%s %s is running in another process; waiting for it", kind, cell_id)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


# ---------------------------------------------------------------- signals and heartbeat

@contextlib.contextmanager
def _signals_raise_killed() -> Iterator[None]:
    """SIGTERM / SIGINT raise `Killed` (once) while the block runs; handlers restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if fired:  # cleanup in progress: a second signal does not interrupt it
            return
        fired.append(signum)
        raise Killed(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Heartbeat(threading.Thread):
    """Refreshes the run's `heartbeat` tag every lease / 3 seconds; failures are ignored (a dead
    server is handled where the record is written)."""

    def __init__(self, run_id: str, interval: float):
        super().__init__(daemon=True, name=f"heartbeat-{run_id[:8]}")
        self.run_id, self.interval, self.stop = run_id, interval, threading.Event()

    def run(self) -> None:
        from mlflow.tracking import MlflowClient

        from suite.tracking import HEARTBEAT_TAG

        client = MlflowClient()
        while not self.stop.wait(self.interval):
            try:
                client.set_tag(self.run_id, HEARTBEAT_TAG, f"{time.time():.0f}")
            except Exception:  # noqa: BLE001 - best effort
                pass


# ---------------------------------------------------------------- the handle

@dataclass
class RecordedRun:
    """What `recorded_run` yields: the run id, `existing` (a FINISHED run found under the lock,
    when asked to skip), and `finish`."""

    run_id: str
    cell_id: str
    kind: str
    experiment: str = ""
    existing: Any = None
    spool_dir: Path | None = None
    opening: dict = field(default_factory=dict)  # what was logged at the start (for the spool)
    spooled: Path | None = None
    finished: bool = False

    def finish(self, record: Any, metrics: dict[str, float], tags: dict[str, str]) -> None:
        """Spool the outcome locally, then log tags, metrics and the `result.json` artifact."""
        import mlflow

        from suite.paths import tracking_uri

        self.spooled = self.spool_dir / f"{self.run_id}.json"
        write_atomic(self.spooled, json.dumps({
            "tracking_uri": tracking_uri(), "experiment": self.experiment, "run_id": self.run_id,
            "cell_id": self.cell_id, "kind": self.kind, "tags": tags, "metrics": metrics,
            "record": _as_dict(record), **self.opening}, indent=1, default=str))
        try:
            mlflow.set_tags(tags)
            mlflow.log_metrics(metrics)
            mlflow.log_dict(_as_dict(record), "result.json")
        except Exception as e:  # noqa: BLE001 - whatever MLflow raised, the record is spooled
            raise self.lost(e) from None
        self.finished = True

    def lost(self, e: BaseException) -> TrackingLost:
        from suite.paths import tracking_uri

        return TrackingLost(f"MLflow ({tracking_uri()}) failed recording {self.kind} {self.cell_id} "
                            f"({_one_line(e)}); its result is kept in {self.spooled}; upload it with "
                            "`python -m suite.sync` once the tracking server is back")


def _close(run_id: str, status: str, tags: dict[str, str]) -> None:
    """Tag and end the active run; the fluent run is popped even when MLflow is unreachable."""
    import mlflow

    try:
        if tags:
            mlflow.set_tags(tags)
    except Exception as e:  # noqa: BLE001
        log.warning("could not tag run %s %s: %s", run_id, status, _one_line(e))
    try:
        mlflow.end_run(status=status)  # pops the run before it calls the server
    except Exception as e:  # noqa: BLE001
        log.warning("could not mark run %s %s: %s", run_id, status, _one_line(e))


# ---------------------------------------------------------------- the lifecycle

@contextlib.contextmanager
def recorded_run(cfg, *, kind: str, cell_id: str, experiment: str, params: dict[str, str],
                 tags: dict[str, str], run_name: str | None = None, data_files: Iterable[Path] = (),
                 skip_finished: bool = False) -> Iterator[RecordedRun]:
    """Open the MLflow run of one stage and close it honestly: FINISHED, FAILED + error,
    KILLED + reason; see the module docstring."""
    import mlflow
    from omegaconf import OmegaConf

    from suite import tracking

    cache = cache_dir(cfg.cache_dir)
    clean_tmp(cache)
    with cell_lock(cache, kind, cell_id):
        tracking.setup_mlflow(experiment)
        if skip_finished and (done := tracking.finished_run(experiment, cell_id)) is not None:
            yield RecordedRun(done.info.run_id, cell_id, kind, experiment, existing=done)
            return
        tracking.close_orphans(experiment, cell_id)
        config_text = OmegaConf.to_yaml(OmegaConf.structured(cfg))
        environment = tracking.environment(data_files)
        open_tags = {"cell_id": cell_id, "kind": kind, "suite.version": tracking.__version__,
                     "git_sha": tracking.git_sha(), **tracking.run_owner(),
                     tracking.HEARTBEAT_TAG: f"{time.time():.0f}", **tags}
        run = mlflow.start_run(run_name=run_name, tags=open_tags)
        handle = RecordedRun(run.info.run_id, cell_id, kind, experiment, spool_dir=cache / "spool",
                             opening={"run_name": run_name, "open_tags": open_tags, "params": params,
                                      "config_yaml": config_text, "environment": environment})
        beat = _Heartbeat(handle.run_id, max(1.0, tracking.lease_seconds() / 3))
        with _signals_raise_killed():  # around the cleanup too: a second signal cannot cut it short
            try:
                tracking.log_params(mlflow, params)
                mlflow.log_text(config_text, "config.yaml")
                mlflow.log_dict(environment, "environment.json")
                beat.start()
                yield handle
            except Killed as k:
                beat.stop.set()
                print(f"sparq: {k.reason}: {kind} {cell_id} (run {handle.run_id}) marked KILLED",
                      file=sys.stderr)
                _close(handle.run_id, "KILLED", {"error": f"killed: {k.reason}", "killed_reason": k.reason})
                clean_tmp(cache, own=True)
                raise
            except TrackingLost:
                beat.stop.set()
                _close(handle.run_id, "FAILED", {})  # pops the fluent run; the server is likely gone
                raise
            except BaseException as e:
                beat.stop.set()
                _close(handle.run_id, "FAILED", {"error": f"{type(e).__name__}: {e}"[:5000]})
                clean_tmp(cache, own=True)
                raise
            beat.stop.set()
            try:
                mlflow.end_run(status="FINISHED")
            except Exception as e:  # noqa: BLE001
                if handle.spooled is None:
                    raise
                raise handle.lost(e) from None
            if handle.spooled is not None:
                handle.spooled.unlink(missing_ok=True)
