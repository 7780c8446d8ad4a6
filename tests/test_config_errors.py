"""Bad input fails before any compute, in one line naming the key and what is allowed, logging nothing."""

import os
import subprocess
import sys

import pytest

from suite.config import compose
from suite.errors import ConfigError, SparqError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BAD = {
    "unknown model": (["model=gpt9"], "model: unknown option 'gpt9'; allowed: bert_base"),
    "unknown task": (["task=imagenet"], "task: unknown option 'imagenet'; allowed: cola"),
    "unknown profile": (["profile=huge"], "profile: unknown option 'huge'"),
    "unknown key": (["train.lrr=1e-4"], "train.lrr"),
    "bad lr": (["train.lr=-1"], "train.lr: must be > 0"),
    "bad device": (["device=tpu"], "device: 'tpu'; allowed: auto, cpu, cuda"),
    "bad type": (["seed=abc"], "seed"),
    "missing local model": (["model.name_or_path=/nonexistent/model"], "model.name_or_path: local directory"),
    "missing data file": (["task=mnli"], "task.files.eval: missing data file"),
    "dense with target": (["sparsity.target=0.5"], "sparsity.target"),
}


def n_runs() -> int:
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    return sum(len(mlflow.search_runs([e.experiment_id], output_format="list"))
               for e in mlflow.search_experiments())


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_rejects_bad_input_in_one_line(case, data_dir):
    overrides, expected = BAD[case]
    before = n_runs()
    proc = subprocess.run([sys.executable, "-m", "suite.run", *overrides], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sparq: error: ") and expected in lines[0], lines[0]
    assert n_runs() == before


def test_missing_data_dir_is_named(tmp_path):
    from suite.run import preflight

    cfg = compose([f"data_dir={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="data_dir: data directory .* does not exist"):
        preflight(cfg)


def test_compose_validates_typed_sections():
    cfg = compose(["seed=7", "task=mrpc"])
    assert cfg.seed == 7 and cfg.task.name == "mrpc" and cfg.task.num_labels == 2
    assert cfg.sparsity.method == "dense" and cfg.quant.weight_bits == 32
    with pytest.raises(SparqError):
        compose(["train.batch_size=0"])


def test_deleted_mlflow_experiment_is_named_before_any_run():
    import mlflow

    from suite import tracking

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("deleted-once-smoke")
    client.delete_experiment(exp_id)
    with pytest.raises(SparqError, match=rf"experiment_name: MLflow experiment 'deleted-once-smoke' \(id {exp_id}\) is deleted"):
        tracking.setup_mlflow("deleted-once-smoke")
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"  # left as the user put it


def test_cell_run_lands_in_its_experiment_when_a_parallel_cell_created_it_first(monkeypatch):
    """Two cells creating one experiment at once: the loser must still log into it, not "Default"."""
    import mlflow
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    from suite import tracking

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    exp_id = mlflow.MlflowClient().create_experiment("race-smoke")  # the other cell won the race
    real, calls = TrackingServiceClient.get_experiment_by_name, []

    def racing_lookup(self, name):  # our first lookup ran before the other cell's creation
        calls.append(name)
        return None if len(calls) == 1 else real(self, name)

    monkeypatch.setattr(TrackingServiceClient, "get_experiment_by_name", racing_lookup)
    mlflow_ = tracking.setup_mlflow("race-smoke")
    with mlflow_.start_run() as run:
        pass
    assert len(calls) >= 2 and run.info.experiment_id == exp_id
