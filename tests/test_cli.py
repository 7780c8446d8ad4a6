"""A command line people can read: usage of ./reproduce.sh (instant, runs nothing), suite.grid and
suite.run --help, offline model errors that say what to do within seconds, and a grid that checks
its models before its first cell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.errors import SparqError

ROOT = Path(__file__).resolve().parent.parent


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_reproduce_help_prints_usage_at_once_and_runs_nothing(flag, tmp_path):
    """In a copy of the project's entry point and configs with no Python to set up with: usage on
    stdout, exit 0, under a second, and not one file created (no .venv, no report, no runs)."""
    shutil.copy(ROOT / "reproduce.sh", tmp_path / "reproduce.sh")
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    before = _tree(tmp_path)
    env = {"PATH": os.environ["PATH"], "PYTHON": str(tmp_path / "no-python"), "HOME": str(tmp_path)}
    start = time.perf_counter()
    result = subprocess.run(["bash", str(tmp_path / "reproduce.sh"), flag], capture_output=True, text=True,
                            timeout=30, env=env, cwd=tmp_path)
    seconds = time.perf_counter() - start
    assert result.returncode == 0 and result.stderr == ""
    assert seconds < 1.0, seconds
    assert _tree(tmp_path) == before
    out = result.stdout
    assert out.startswith("usage: ./reproduce.sh")
    for command in ("main", "EXPERIMENT", "all", "test", "setup", "-h, --help"):
        assert f"\n  {command}" in out or f" {command} " in out
    assert "prune_ofa" in out and "prune_ofa_full" not in out  # experiments listed from conf/
    for where in ("mlflow.db", "runs/results/", "multirun/", "SPARQ_DATA_DIR", "results/"):
        assert where in out
    assert "profile=smoke|quick|full" in out and "task=" in out and "model.name_or_path=DIR" in out
    assert "torchrun --standalone --nproc_per_node=N -m suite.run" in out and "hydra/launcher=slurm" in out


def test_grid_help_exits_zero_with_usage(capsys):
    from suite.grid import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m suite.grid") and "--estimate" in out
    assert main([]) == 2  # no target: a usage error, in the one-line form of every entry point
    assert capsys.readouterr().err.startswith("sparq: error: the following arguments are required")


def test_run_help_lists_only_the_groups_a_user_picks():
    result = subprocess.run([sys.executable, "-m", "suite.run", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for group in ("model", "task", "sparsity", "quant", "distill", "train", "profile", "upstream"):
        assert f"\n  {group}: " in out
    assert "sparsity: block, dense, gmp, movement, nm" in out and "+experiment=NAME" in out and "prune_ofa" in out
    for internal in ("claims", "schema/", "experiment/common", "experiment/arm", "profile/grid", "cell_seconds"):
        assert internal not in out
    assert "HF_HUB_OFFLINE=1" in out and "torchrun" in out and "train.micro_batch_size" in out


def test_help_groups_come_from_conf():
    from suite.usage import user_groups

    groups = user_groups()
    assert set(groups) == {p.name for p in (ROOT / "conf").iterdir() if p.is_dir()} - {"claims", "hydra"}
    assert groups["profile"] == ["full", "quick", "smoke"]  # not the nested profile/grid


def _check(name: str, monkeypatch, offline: bool, endpoint: str | None = None) -> tuple[str, float]:
    import huggingface_hub.constants

    from suite.config import ModelConfig
    from suite.models import check_model

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
    if endpoint:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    start = time.perf_counter()
    with pytest.raises(SparqError) as e:
        check_model(ModelConfig(name="x", name_or_path=name))
    return str(e.value), time.perf_counter() - start


def _says_what_to_do(message: str) -> None:
    assert message.startswith("model.name_or_path: ") and "\n" not in message
    assert "HF_HUB_OFFLINE=1" in message and "local directory" in message and "model=minilm" in message


def test_offline_hub_id_says_what_to_do_at_once(monkeypatch):
    message, seconds = _check("sparq-test-org/no-such-model-offline", monkeypatch, offline=True)
    _says_what_to_do(message)
    assert "HF_HUB_OFFLINE=1:" in message and seconds < 2.0


def test_unreachable_hub_is_detected_in_seconds_not_retried(monkeypatch):
    """Not marked offline, but nothing listens at the hub's address: one connection probe, then the
    same advice; no half minute of retries."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    message, seconds = _check("sparq-test-org/no-such-model-unreachable", monkeypatch, offline=False,
                              endpoint=f"http://127.0.0.1:{port}")
    _says_what_to_do(message)
    assert f"the hub is unreachable (127.0.0.1:{port}" in message and seconds < 5.0


def test_grid_checks_its_models_before_the_first_cell(smoke_overrides, tmp_path):
    """A sweep over a local tiny model and a hub id that is not cached, offline: one line, exit 2,
    no sweep dir, no run."""
    import mlflow

    tiny = next(o for o in smoke_overrides if o.startswith("model.name_or_path=")).partition("=")[2]
    rest = [o for o in smoke_overrides if not o.startswith("model.name_or_path=")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "suite.run", "-m", *rest, "experiment_name=cli-grid",
                             f"model.name_or_path={tiny},sparq-test-org/no-such-model", "seed=1,2",
                             f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sparq: error: model.name_or_path: 'sparq-test-org/no-such-model'")
    _says_what_to_do(last.removeprefix("sparq: error: ").split(" (grid cell ")[0])
    assert "(grid cell " in last and "seed=1" in last
    assert not (tmp_path / "sweep").exists() and time.perf_counter() - start < 60
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    assert mlflow.get_experiment_by_name("cli-grid-smoke") is None
