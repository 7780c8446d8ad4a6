"""Loopback `mlflow server`s for the tracking tests (SQLite backend, proxied artifacts)."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_servers(base: Path, n: int = 1, timeout: float = 240) -> list[tuple[subprocess.Popen, str]]:
    """`n` servers over one store (`base/server.db`, `base/artifacts`), each on a free port, in
    their own process group; returns once every one answers /health (fails the test otherwise)."""
    started = []
    for _ in range(n):
        port, log = free_port(), open(base / f"server-{time.time_ns()}.log", "w")
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port",
             str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{base / 'server.db'}",
             "--artifacts-destination", str(base / "artifacts"), "--serve-artifacts"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append((proc, f"http://127.0.0.1:{port}", log))
    deadline = time.time() + timeout
    for proc, url, log in started:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                for other, _, _ in started:
                    stop_server(other, crash=True)
                pytest.fail(f"mlflow server did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.5)
    for _, _, log in started:
        log.close()  # the child keeps its own descriptor
    return [(proc, url) for proc, url, _ in started]


def stop_server(proc: subprocess.Popen, crash: bool = False) -> None:
    """The server and its workers: SIGKILL at once when `crash`, else SIGTERM then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL if crash else signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
