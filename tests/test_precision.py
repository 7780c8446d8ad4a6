"""train.precision: bf16 autocast of the training forward, fp32 by default, recorded, and left out of
the cell id at fp32 (cells recorded before the option keep their ids)."""

import pytest
import torch

from suite.config import ConfigError, TrainConfig, compose
from suite.distributed import autocast
from suite.identity import config_hash, identity


def test_bf16_autocast_runs_matmuls_in_bf16_and_fp32_leaves_them():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with autocast(torch.device("cpu"), "bf16"):
        assert lin(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert lin(x).dtype == torch.float32


def test_precision_is_validated_and_only_bf16_enters_the_cell_id(tiny_model):
    with pytest.raises(ConfigError, match="train.precision"):
        TrainConfig(precision="fp16")
    base = [f"model.name_or_path={tiny_model}", "model.name=tiny", "profile=smoke", "data_dir=null"]
    fp32, bf16 = compose(base), compose([*base, "train.precision=bf16"])
    assert "precision" not in identity(fp32)["train"]
    assert config_hash(fp32) == config_hash(compose([*base, "train.precision=fp32"]))
    assert config_hash(bf16) != config_hash(fp32)


def test_a_bf16_smoke_cell_trains_and_records_its_precision(smoke_overrides, run_cell):
    result = run_cell([*smoke_overrides, "task=sst2", "sparsity=gmp", "sparsity.target=0.5", "seed=5",
                       "train.precision=bf16"])
    assert result.status == "FINISHED" and 0 <= result.metrics["eval_primary"] <= 100
    import mlflow

    assert mlflow.get_run(result.run_id).data.params["train.precision"] == "bf16"
