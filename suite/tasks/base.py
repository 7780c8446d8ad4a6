"""Loading task splits from a data directory or the hub, and the documented dev split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset

from suite.config import TaskConfig
from suite.errors import ConfigError
from suite.registry import Registry

# task.kind -> TaskKind instance (featurize, collate, predictions)
TASK_KINDS: Registry = Registry("task.kind")


@dataclass
class TaskData:
    train: Dataset
    eval: Dataset
    source: str  # "data_dir" or "hub"
    files: list[Path] = field(default_factory=list)  # files read (hashed into the run record)
    train_from_dev: bool = False  # True when train/eval are the documented split of dev


def check_task_files(cfg: TaskConfig, data_dir: str | None, *, parse: bool = True) -> None:
    """Fail before any compute (and before a run is opened) when the data directory lacks the
    eval file, or (`parse`) when a file that will be read does not decode, parse or hold
    examples: the task kind's `check` reads it whole, as training will (errors name file and line)."""
    if data_dir is None:
        if not cfg.hub_path:
            raise ConfigError("data_dir", f"task '{cfg.name}' has no hub dataset; set SPARQ_DATA_DIR")
        return
    root = Path(data_dir)
    if not root.is_dir():
        raise ConfigError("data_dir", f"data directory {root} does not exist")
    eval_file = root / cfg.files["eval"]
    if not eval_file.is_file():
        raise ConfigError("task.files.eval", f"missing data file {eval_file} (task '{cfg.name}')")
    if parse:
        kind = TASK_KINDS.get(cfg.kind)
        for split in ("train", "eval"):
            if split in cfg.files and (path := root / cfg.files[split]).is_file():
                _checked_examples(kind, path, cfg)


def _checked_examples(kind, path: Path, cfg: TaskConfig) -> int:
    """kind.check(path), once per process for an unchanged file and task."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, repr(cfg))
    if key not in _CHECKED:
        _CHECKED[key] = kind.check(path, cfg)
    return _CHECKED[key]


_CHECKED: dict[tuple, int] = {}


def in_eval_half(key: str, eval_fraction: float) -> bool:
    """Deterministic split of dev when the data dir has no train file: by content hash of `key`
    (the example text for GLUE, the article title for SQuAD), so it is stable under reordering
    and SQuAD contexts never leak between the halves."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


def load_task_data(cfg: TaskConfig, data_dir: str | None) -> TaskData:
    kind = TASK_KINDS.get(cfg.kind)
    if data_dir is None:
        return TaskData(train=kind.from_hub(cfg, cfg.hub_splits["train"]),
                        eval=kind.from_hub(cfg, cfg.hub_splits["eval"]), source="hub")
    check_task_files(cfg, data_dir, parse=False)  # parsed below; errors name file and line
    root = Path(data_dir)
    eval_file = root / cfg.files["eval"]
    dev = kind.read(eval_file, cfg)
    train_file = root / cfg.files["train"] if "train" in cfg.files else None
    if train_file is not None and train_file.is_file():
        return TaskData(train=kind.read(train_file, cfg), eval=dev, source="data_dir",
                        files=[train_file, eval_file])
    keys = [kind.split_key(row) for row in dev]
    eval_rows = [i for i, k in enumerate(keys) if in_eval_half(k, cfg.eval_split_of_dev)]
    train_rows = [i for i, k in enumerate(keys) if not in_eval_half(k, cfg.eval_split_of_dev)]
    return TaskData(train=dev.select(train_rows), eval=dev.select(eval_rows), source="data_dir",
                    files=[eval_file], train_from_dev=True)
