"""Faults tier (issue 17, cases 2, 3, 6): a tracking server that dies or is unreachable, signals,
SIGKILL orphans seen from another host, half-written cache files, two identical cells at once.
Smoke profile on the tiny model, the session's scratch store (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from mlflow_server import start_servers, stop_server

from suite.config import compose
from suite.errors import SparqError
from suite.tracking import cell_id, experiment_name

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parent.parent


def _runs(experiment: str, cid: str | None = None) -> list:
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return []
    where = f"tags.cell_id = '{cid}'" if cid else ""
    return mlflow.search_runs([exp.experiment_id], filter_string=where, output_format="list")


def _start_servers(base: Path, n: int) -> list[tuple[subprocess.Popen, str]]:
    """`n` loopback `mlflow server`s over one store, started together: killing one and syncing to
    another is a crash and a restart of the same server."""
    MlflowClient(f"sqlite:///{base / 'server.db'}").search_experiments()  # tables made once, here
    return start_servers(base, n)


def _stop_server(proc: subprocess.Popen) -> None:
    stop_server(proc, crash=True)  # the server and its workers, at once (a crash)


@pytest.fixture
def restore_uri(monkeypatch):
    previous = mlflow.get_tracking_uri()
    yield monkeypatch
    mlflow.set_tracking_uri(previous)


def test_unreachable_tracking_server_is_one_line_in_seconds(smoke_overrides, run_cell, restore_uri):
    restore_uri.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    start = time.time()
    with pytest.raises(SparqError) as e:
        run_cell(smoke_overrides + ["task=sst2", "experiment_name=faults-unreachable"])
    assert time.time() - start < 15
    assert "tracking server http://127.0.0.1:9 is unreachable" in str(e.value) and "\n" not in str(e.value)


def test_server_killed_mid_cell_loses_nothing(smoke_overrides, run_cell, restore_uri, tmp_path, monkeypatch):
    import suite.run
    from suite import sync

    (proc, url), (proc2, url2) = _start_servers(tmp_path, 2)
    restore_uri.setenv("MLFLOW_TRACKING_URI", url)
    killed_at = []
    compute = suite.run.execute

    def execute_then_crash_server(*args):
        out = compute(*args)  # trained and evaluated; the server dies before the record
        _stop_server(proc)
        killed_at.append(time.time())
        return out

    monkeypatch.setattr(suite.run, "execute", execute_then_crash_server)
    overrides = smoke_overrides + ["task=sst2", "seed=3", "experiment_name=faults-server"]
    try:
        with pytest.raises(SparqError) as e:
            run_cell(overrides)
        assert time.time() - killed_at[0] < 60
        message = str(e.value)
        spooled = Path(message.split("kept in ", 1)[1].split(";", 1)[0])
        assert "\n" not in message and "python -m suite.sync" in message and spooled.is_file()
        record = json.loads(spooled.read_text())
        assert record["metrics"]["eval_primary"] >= 0 and record["cell_id"] == cell_id(compose(overrides))
        assert MlflowClient(url2).get_run(record["run_id"]).info.status == "RUNNING"  # lost, for now

        assert sync.main(["--tracking-uri", url2]) == 0 and not spooled.exists()  # the server is back
        run = MlflowClient(url2).get_run(record["run_id"])
        assert run.info.status == "FINISHED" and run.data.metrics["eval_primary"] == record["metrics"]["eval_primary"]
        restore_uri.setenv("MLFLOW_TRACKING_URI", url2)
        mlflow.set_tracking_uri(url2)
        assert mlflow.artifacts.load_dict(f"runs:/{record['run_id']}/result.json") == record["record"]
        assert run_cell(overrides).status == "SKIPPED"  # the recovered record counts
    finally:
        _stop_server(proc)
        _stop_server(proc2)


def _cell_process(overrides: list[str], tag: str, merged: bool = False) -> subprocess.Popen:
    """`python -m suite.run` in a new session; stderr piped (`merged`: stdout too, Hydra logs there)."""
    return subprocess.Popen([sys.executable, "-m", "suite.run", *overrides,
                             f"hydra.run.dir={Path(os.environ['SPARQ_CACHE_DIR']).parent / tag}"],
                            cwd=ROOT, stdout=subprocess.PIPE if merged else subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if merged else subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_step(proc: subprocess.Popen, seconds: float = 240) -> list[str]:
    lines, deadline = [], time.time() + seconds
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("sparq-debug: step 1"):
            return lines
        assert time.time() < deadline, "training never started"
    pytest.fail("cell ended before training: " + "".join(lines[-20:]))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_cell_marks_killed_and_cleans_up(smoke_overrides, sig):
    overrides = smoke_overrides + ["task=mrpc", f"seed={20 + sig}", "experiment_name=faults-signal",
                                   "profile.max_steps=3"]
    cfg = compose(overrides)
    cache = Path(os.environ["SPARQ_CACHE_DIR"])
    proc = _cell_process(overrides + ["debug.step_sleep=30"], f"signal-{sig}")
    try:
        _wait_for_step(proc)
        own_tmp = cache / "teachers" / f"x.safetensors.tmp{proc.pid}"  # as a save cut short leaves it
        own_tmp.parent.mkdir(parents=True, exist_ok=True)
        own_tmp.write_bytes(b"partial")
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert rc == 128 + sig, err[-2000:]
    assert f"{signal.Signals(sig).name} received" in err and "marked KILLED" in err
    [run] = _runs(experiment_name(cfg), cell_id(cfg))
    assert run.info.status == "KILLED"
    assert run.data.tags["killed_reason"] == f"{signal.Signals(sig).name} received"
    assert not own_tmp.exists()
    lock = cache / "locks" / f"cell-{cell_id(cfg)}.lock"
    from filelock import FileLock

    FileLock(str(lock)).acquire(timeout=1)  # released


def test_run_left_running_on_another_host_is_closed_by_its_lease(smoke_overrides, run_cell, monkeypatch):
    overrides = smoke_overrides + ["task=sst2", "seed=31", "experiment_name=faults-lease"]
    cfg = compose(overrides)
    cid, experiment = cell_id(cfg), experiment_name(cfg)
    from suite.tracking import setup_mlflow

    setup_mlflow(experiment)
    client, exp = MlflowClient(), mlflow.get_experiment_by_name(experiment)
    now = time.time()
    dead = client.create_run(exp.experiment_id, tags={"cell_id": cid, "host": "node-b", "pid": "4242",
                                                      "heartbeat": f"{now - 3600:.0f}"})
    alive = client.create_run(exp.experiment_id, tags={"cell_id": cid, "host": "node-c", "pid": "4242",
                                                       "heartbeat": f"{now:.0f}"})
    result = run_cell(overrides + ["force=true"])
    assert result.status == "FINISHED"
    status = {r.info.run_id: r.info.status for r in _runs(experiment, cid)}
    assert status[dead.info.run_id] == "KILLED" and status[alive.info.run_id] == "RUNNING"
    assert "no heartbeat" in client.get_run(dead.info.run_id).data.tags["error"]
    assert "heartbeat" in client.get_run(result.run_id).data.tags
    client.set_terminated(alive.info.run_id, "KILLED")


def test_leftover_tmp_files_in_the_cache_are_cleaned(smoke_overrides, run_cell):
    cache = Path(os.environ["SPARQ_CACHE_DIR"])
    stale = cache / "teachers" / "abc" / "model.safetensors.tmp999999999"
    fresh = cache / "teachers" / "abc" / "model.sha256.tmp999999998"
    for path in (stale, fresh):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a teacher")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert run_cell(smoke_overrides + ["task=sst2", "seed=32", "experiment_name=faults-tmp"]).status == "FINISHED"
    assert not stale.exists() and fresh.exists()  # a fresh one may still be written (another host)
    fresh.unlink()


def test_two_identical_cells_at_once_run_once(smoke_overrides):
    overrides = smoke_overrides + ["task=sst2", "seed=33", "experiment_name=faults-twin", "debug.step_sleep=2"]
    procs = [_cell_process(overrides, f"twin-{i}", merged=True) for i in range(2)]
    errs = []
    for proc in procs:
        errs.append(proc.communicate(timeout=400)[0])  # stdout and stderr
        assert proc.returncode == 0, errs[-1][-2000:]
    cfg = compose(overrides)
    runs = _runs(experiment_name(cfg), cell_id(cfg))
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert sum("SKIPPED" in e for e in errs) == 1 and any("waiting for it" in e for e in errs)
