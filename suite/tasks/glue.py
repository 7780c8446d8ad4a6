"""GLUE sentence and sentence-pair tasks (classification and STS-B regression)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from suite.config import TaskConfig
from suite.errors import SparqError
from suite.tasks.base import TASK_KINDS

csv.field_size_limit(2**31 - 1)


def decode_utf8(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are named by line and column."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise SparqError(f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x} at column {column})") from None


def read_glue_tsv(path: Path, cfg: TaskConfig) -> dict[str, list]:
    """Read a GLUE TSV with quoting off (as the GLUE release is written); columns by index.
    Checks the header (`task.header_names`), the width of every row and every label, and that
    there is at least one example; errors name file and line."""
    cols = cfg.columns
    rows: dict[str, list] = {"text_a": [], "label": []}
    if cols.get("text_b") is not None:
        rows["text_b"] = []
    label_ids = {label: i for i, label in enumerate(cfg.labels)}
    width = max(c + 1 if c >= 0 else -c for c in cols.values())
    reader = csv.reader(io.StringIO(decode_utf8(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    if cfg.header:
        header = next(reader, None)
        if header is None:
            raise SparqError(f"{path}: empty file (expected a header line, then examples)")
        if len(header) < width:
            raise SparqError(f"{path}:1: header has {len(header)} tab-separated fields, expected >= {width}")
        for role, name in cfg.header_names.items():
            got = header[cols[role]].strip()
            if got != name:
                raise SparqError(f"{path}:1: header column {cols[role]} ({role}) is '{got}', expected "
                                 f"'{name}' (task.header_names.{role}); renamed or reordered columns?")
    for line_no, row in enumerate(reader, start=2 if cfg.header else 1):
        if len(row) < width:
            raise SparqError(f"{path}:{line_no}: expected >= {width} tab-separated fields, got {len(row)}")
        raw = row[cols["label"]].strip()
        if cfg.kind == "regression":
            label = regression_label(raw, cfg.label_range, f"{path}:{line_no}")
        elif raw in label_ids:
            label = label_ids[raw]
        else:
            raise SparqError(f"{path}:{line_no}: label '{raw}' not in task.labels {cfg.labels}")
        rows["text_a"].append(row[cols["text_a"]])
        if "text_b" in rows:
            rows["text_b"].append(row[cols["text_b"]])
        rows["label"].append(label)
    if not rows["label"]:
        raise SparqError(f"{path}: no examples" + (" after the header" if cfg.header else " (empty file)"))
    return rows


def regression_label(raw: str, label_range: list[float] | None, where: str) -> float:
    """A regression label as a float: a finite number within `task.label_range` when the task sets one."""
    try:
        label = float(raw)
    except ValueError:
        raise SparqError(f"{where}: label '{raw}' is not a number") from None
    if not math.isfinite(label):
        raise SparqError(f"{where}: label '{raw}' is not a finite number")
    if label_range is not None and not label_range[0] <= label <= label_range[1]:
        raise SparqError(f"{where}: label {raw} outside task.label_range [{label_range[0]:g}, {label_range[1]:g}]")
    return label


class SequenceTask:
    """Sentence(-pair) classification or regression over [CLS]."""

    def read(self, path: Path, cfg: TaskConfig) -> Dataset:
        return Dataset.from_dict(read_glue_tsv(path, cfg))

    def check(self, path: Path, cfg: TaskConfig) -> int:
        """Parse the whole file as `read` does (SparqError naming file and line); the examples."""
        return len(read_glue_tsv(path, cfg)["label"])

    def from_hub(self, cfg: TaskConfig, split: str) -> Dataset:
        from datasets import load_dataset

        ds = load_dataset(cfg.hub_path, cfg.hub_name, split=split)
        mapping = {src: dst for dst, src in cfg.hub_columns.items() if src != dst}
        ds = ds.rename_columns(mapping) if mapping else ds
        return ds.select_columns([c for c in ("text_a", "text_b", "label") if c in ds.column_names])

    def split_key(self, row: dict) -> str:
        return row["text_a"] + "\t" + row.get("text_b", "")

    def featurize(self, ds: Dataset, tokenizer, cfg: TaskConfig, train: bool) -> Dataset:
        def encode(batch):
            pair = (batch["text_a"], batch["text_b"]) if "text_b" in batch else (batch["text_a"],)
            enc = tokenizer(*pair, truncation=True, max_length=cfg.max_length)
            enc["labels"] = batch["label"]
            return enc

        return ds.map(encode, batched=True, remove_columns=ds.column_names, desc=f"tokenize {cfg.name}")

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, return_tensors="pt")

    output_keys = ("logits",)

    def metric_inputs(self, cfg: TaskConfig, outputs: dict[str, torch.Tensor], eval_ds: Dataset,
                      features: Dataset) -> dict:
        out = outputs["logits"].float().numpy()
        preds = out[:, 0] if cfg.kind == "regression" else np.argmax(out, axis=-1)
        return {"predictions": preds.tolist(), "references": list(features["labels"])}


TASK_KINDS.register("classification")(SequenceTask())
TASK_KINDS.register("regression")(SequenceTask())
