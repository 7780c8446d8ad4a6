"""Model sources: the embedded package (offline default), a local directory, or a hub id.

`resolve_model_dir` is cheap and runs at validation time; `load_model` builds the encoder with the
task's head. Weights are read through safetensors (transformers' default) and never with
`trust_remote_code`; local directories and packages are read with `local_files_only`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from torch import nn

from suite.config import ModelConfig, TaskConfig
from suite.errors import ConfigError, SparqError


def resolve_model_dir(cfg: ModelConfig) -> tuple[str, bool]:
    """Return (path or hub id, is_local). Raises ConfigError when a local source is missing."""
    if cfg.name_or_path:
        path = Path(cfg.name_or_path).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise ConfigError("model.name_or_path", f"{path} has no config.json")
            return str(path), True
        if cfg.name_or_path.startswith((".", "/", "~")):
            raise ConfigError("model.name_or_path", f"local directory {path} does not exist")
        return cfg.name_or_path, False
    try:
        module = importlib.import_module(cfg.package)
    except ImportError:
        raise ConfigError("model.package", f"package '{cfg.package}' is not installed "
                          "(run ./reproduce.sh setup)") from None
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if getter else Path(module.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise ConfigError("model.package", f"package '{cfg.package}' ships no model at {path}")
    return str(path), True


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    where, local = resolve_model_dir(cfg)
    return AutoTokenizer.from_pretrained(where, local_files_only=local, revision=cfg.revision,
                                         trust_remote_code=False)


def load_model(cfg: ModelConfig, task: TaskConfig, dropout: float | None = None) -> nn.Module:
    """The pretrained encoder with a freshly initialised head for `task` (seed beforehand)."""
    from transformers import (
        AutoConfig,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
    )

    where, local = resolve_model_dir(cfg)
    kwargs = dict(local_files_only=local, revision=cfg.revision, trust_remote_code=False)
    config = AutoConfig.from_pretrained(where, **kwargs)
    if dropout is not None:
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
            if hasattr(config, key):
                setattr(config, key, dropout)
    if task.kind == "qa":
        cls = AutoModelForQuestionAnswering
    else:
        cls = AutoModelForSequenceClassification
        config.num_labels = task.num_labels
        config.problem_type = "regression" if task.kind == "regression" else "single_label_classification"
        if task.labels:
            config.id2label = dict(enumerate(task.labels))
            config.label2id = {label: i for i, label in enumerate(task.labels)}
    try:
        model = cls.from_pretrained(where, config=config, **kwargs)
    except OSError as e:
        raise SparqError(f"model.name_or_path: cannot load '{where}': {str(e).splitlines()[0]}") from None
    from suite.models.shrink import shrink

    return shrink(model, cfg)
