"""MLFLOW_TRACKING_URI pointing at a real `mlflow server` (SQLite backend, proxied artifacts),
started on 127.0.0.1 on a free port for this test and stopped after it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path, monkeypatch):
    import mlflow

    previous, port = mlflow.get_tracking_uri(), _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url
    finally:
        mlflow.set_tracking_uri(previous)  # later tests talk to the session's store again
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn/gunicorn workers
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def test_cells_record_and_resume_through_a_tracking_server(tracking_server, smoke_overrides, run_cell, tmp_path):
    import mlflow

    overrides = smoke_overrides + ["experiment_name=server", "task=sst2", "seed=2"]
    first = run_cell(overrides)
    assert first.status == "FINISHED"
    assert mlflow.get_tracking_uri() == tracking_server
    run = mlflow.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["cell_id"] == first.cell_id
    assert run.data.metrics["eval_primary"] == first.metrics["eval_primary"]
    artifacts = {a.path for a in mlflow.artifacts.list_artifacts(run_id=first.run_id)}
    assert {"config.yaml", "environment.json", "result.json"} <= artifacts  # proxied by the server
    assert (tmp_path / "artifacts").is_dir()
    assert run_cell(overrides).status == "SKIPPED"  # resume reads the server's records
