"""Model sources: the embedded package (offline default), a local directory, or a hub id.

`resolve_model_dir` is cheap and runs at validation time; `load_model` builds the encoder with the
task's head. Weights are read through safetensors (transformers' default) and never with
`trust_remote_code`; local directories and packages are read with `local_files_only`.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
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
        if cfg.name_or_path.startswith((".", "/", "~")) or not _hub_id_form(cfg.name_or_path) \
                or Path(cfg.name_or_path.split("/")[0]).is_dir():
            raise ConfigError("model.name_or_path", f"local directory {path.absolute()} does not exist")
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


def check_model(cfg: ModelConfig) -> tuple[str, bool]:
    """`resolve_model_dir`, and a hub id must resolve too (before a run is opened)."""
    where, local = resolve_model_dir(cfg)
    if not local:
        _check_hub_model(where, cfg.revision)
    return where, local


def _hub_id_form(name: str) -> bool:
    """`name` or `org/name` as the hub spells repo ids (anything else is a path)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


WHAT_TO_DO = ("use a local directory (model.name_or_path=DIR holding config.json and the weights), "
              "the embedded model=minilm, or fetch it once where the hub is reachable (it is then cached "
              "and HF_HUB_OFFLINE=1 reads it from the cache)")
PROBE_SECONDS = 3.0  # how long the hub may take to accept a connection before it counts as unreachable


def _probe_target() -> tuple[str, int]:
    """(host, port) a hub request connects to first: the HTTPS proxy when one is set, else the hub."""
    import os
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(k)), None)
    url = urlsplit(proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else constants.ENDPOINT)
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


@lru_cache(maxsize=8)
def unreachable_reason(host: str, port: int, timeout: float = PROBE_SECONDS) -> str | None:
    """Why `host:port` cannot be reached (DNS or TCP connect, within `timeout` s in all), or None
    when it accepts a connection. Asked once per process and target; a daemon thread, so a hanging
    name lookup cannot stall the run."""
    import socket
    import threading

    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(f"{host}:{port}: {e.strerror or type(e).__name__}")

    probe = threading.Thread(target=connect, daemon=True, name="hub-probe")
    probe.start()
    probe.join(timeout)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {timeout:g} s"


def hub_offline() -> str | None:
    """Why hub ids must be read from the local cache only (HF_HUB_OFFLINE=1 or an unreachable hub),
    or None when the hub can be asked; so no load spends half a minute on retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1"
    reason = unreachable_reason(*_probe_target())
    return f"the hub is unreachable ({reason})" if reason else None


@lru_cache(maxsize=32)
def _check_hub_model(repo_id: str, revision: str | None) -> None:
    """A hub id must resolve before a run is opened: from the local cache when offline (HF_HUB_OFFLINE=1
    or no connection to the hub within seconds), else by fetching its config (what loading does first)."""
    from huggingface_hub import try_to_load_from_cache

    here = Path(repo_id).absolute()
    if (offline := hub_offline()) is not None:
        if not isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str):
            raise ConfigError("model.name_or_path", f"'{repo_id}' is not a local directory ({here} does not "
                              f"exist) nor in the hub cache, and {offline}: {WHAT_TO_DO}")
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(repo_id, revision=revision, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - any failure here is the same user error
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ConfigError("model.name_or_path", f"'{repo_id}' is not a local directory ({here} does not "
                          f"exist) and the hub did not give its config ({first}): {WHAT_TO_DO}") from None


def _local_only(local: bool) -> bool:
    """Read from files only: a local directory, or a hub id while the hub is offline (its cache)."""
    return local or hub_offline() is not None


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    where, local = resolve_model_dir(cfg)
    return AutoTokenizer.from_pretrained(where, local_files_only=_local_only(local), revision=cfg.revision,
                                         trust_remote_code=False)


HEAD_CLASSES = {"classification": "ForSequenceClassification", "regression": "ForSequenceClassification",
                "qa": "ForQuestionAnswering"}


def check_checkpoint(cfg: ModelConfig, task: TaskConfig) -> None:
    """`init=checkpoint`: the model must carry a head for `task` (its architecture, size and label
    set), read from its config before anything is loaded; one ConfigError otherwise."""
    from transformers import AutoConfig

    where, local = check_model(cfg)
    try:
        config = AutoConfig.from_pretrained(where, local_files_only=local, revision=cfg.revision,
                                            trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - an unreadable config is the same user error
        raise ConfigError("init", f"checkpoint '{where}': unreadable config ({str(e).splitlines()[0]})") from None
    want = HEAD_CLASSES[task.kind]
    archs = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith(want) for a in archs):
        raise ConfigError("init", f"checkpoint '{where}' has no {want} head (architectures: "
                          f"{', '.join(archs) or 'none'}); task {task.name} is {task.kind}; use init=pretrained")
    if task.kind == "qa":
        return
    labels = [str(config.id2label[i]) for i in sorted(config.id2label)] if config.id2label else []
    if config.num_labels != task.num_labels:
        raise ConfigError("init", f"checkpoint '{where}' has a {config.num_labels}-output head "
                          f"({', '.join(labels)}); task {task.name} needs {task.num_labels} "
                          f"({', '.join(task.labels) or 'regression'})")
    generic = all(label == f"LABEL_{i}" for i, label in enumerate(labels))
    if task.kind == "classification" and not generic and labels != [str(x) for x in task.labels]:
        raise ConfigError("init", f"checkpoint '{where}' labels ({', '.join(labels)}) are not task "
                          f"{task.name}'s ({', '.join(task.labels)}) in class-id order")


def checkpoint_source(cfg: ModelConfig) -> dict[str, str]:
    """Where `init=checkpoint` weights came from, for the record: the sha256 of each weight file of
    a local directory (host-free: file names only), or the hub id and revision."""
    import json

    from suite.identity import model_identity

    ident = model_identity(cfg)
    if "hub" in ident:
        out = {"init_source": f"hub:{ident['hub']}", "init_revision": str(ident["revision"])}
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ident["hub"], "config.json", revision=cfg.revision)
        if isinstance(cached, str) and Path(cached).parent.parent.name == "snapshots":
            out["init_commit"] = Path(cached).parent.name  # the revision as loaded (hub cache snapshot)
        return out
    return {"init_source": "local", "init_weights_sha256": json.dumps(ident["weights"], sort_keys=True)}


def load_model(cfg: ModelConfig, task: TaskConfig, dropout: float | None = None,
               keep_head: bool = False) -> nn.Module:
    """The pretrained encoder with a freshly initialised head for `task` (seed beforehand);
    `keep_head`: the checkpoint's own head (init=checkpoint), every weight read from it."""
    from transformers import (
        AutoConfig,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
    )

    where, local = resolve_model_dir(cfg)
    kwargs = dict(local_files_only=_local_only(local), revision=cfg.revision, trust_remote_code=False)
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
        model, info = cls.from_pretrained(where, config=config, output_loading_info=True, **kwargs)
    except OSError as e:
        raise SparqError(f"model.name_or_path: cannot load '{where}': {str(e).splitlines()[0]}") from None
    if keep_head and info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise SparqError(f"init: checkpoint '{where}' lacks {len(missing)} weight(s) of the "
                         f"{cls.__name__} model (e.g. {missing[0]}): it is not fine-tuned for this task")
    from suite.models.shrink import shrink

    return shrink(model, cfg)
