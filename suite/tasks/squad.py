"""SQuAD v1.1 extractive QA: sliding windows with doc stride, offsets, standard post-processing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from suite.config import TaskConfig
from suite.errors import SparqError
from suite.tasks.base import TASK_KINDS

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")


def read_squad_json(path: Path) -> dict[str, list]:
    """Read a SQuAD v1.1 file; errors (not UTF-8, not JSON, not SQuAD, no questions) name the file
    and, where JSON says it, the line."""
    from suite.tasks.glue import decode_utf8

    try:
        articles = json.loads(decode_utf8(path))["data"]
    except json.JSONDecodeError as e:
        raise SparqError(f"{path}:{e.lineno}: not JSON ({e.msg}, column {e.colno})") from None
    except (KeyError, TypeError):
        raise SparqError(f"{path}: not a SQuAD v1.1 file (no top-level 'data' list)") from None
    rows: dict[str, list] = {k: [] for k in ("id", "title", "context", "question", "answers")}
    try:
        for article in articles:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    rows["id"].append(qa["id"])
                    rows["title"].append(article["title"])
                    rows["context"].append(paragraph["context"])
                    rows["question"].append(qa["question"].lstrip())
                    rows["answers"].append({"text": [a["text"] for a in qa["answers"]],
                                            "answer_start": [a["answer_start"] for a in qa["answers"]]})
    except (KeyError, TypeError, AttributeError) as e:
        where = f"question {len(rows['id']) + 1}"
        raise SparqError(f"{path}: not a SQuAD v1.1 file ({where}: {type(e).__name__} {e})") from None
    if not rows["id"]:
        raise SparqError(f"{path}: no questions")
    return rows


class QATask:
    output_keys = ("start_logits", "end_logits")

    def read(self, path: Path, cfg: TaskConfig) -> Dataset:
        return Dataset.from_dict(read_squad_json(path))

    def check(self, path: Path, cfg: TaskConfig) -> int:
        """Parse the whole file as `read` does (SparqError naming the file); the questions."""
        return len(read_squad_json(path)["id"])

    def from_hub(self, cfg: TaskConfig, split: str) -> Dataset:
        from datasets import load_dataset

        return load_dataset(cfg.hub_path, cfg.hub_name, split=split)

    def split_key(self, row: dict) -> str:
        return row["title"]  # by article, so no context is shared between train and eval

    def featurize(self, ds: Dataset, tokenizer, cfg: TaskConfig, train: bool) -> Dataset:
        pad_right = tokenizer.padding_side == "right"

        def encode(batch):
            enc = tokenizer(
                batch["question" if pad_right else "context"], batch["context" if pad_right else "question"],
                truncation="only_second" if pad_right else "only_first", max_length=cfg.max_length,
                stride=cfg.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                padding="max_length")
            sample_map = enc.pop("overflow_to_sample_mapping")
            context_id = 1 if pad_right else 0
            if not train:
                enc["example_id"] = [batch["id"][i] for i in sample_map]
                enc["offset_mapping"] = [
                    [o if enc.sequence_ids(j)[k] == context_id else None for k, o in enumerate(offs)]
                    for j, offs in enumerate(enc["offset_mapping"])]
                return enc
            starts, ends = [], []
            for j, offsets in enumerate(enc.pop("offset_mapping")):
                answers = batch["answers"][sample_map[j]]
                seq = enc.sequence_ids(j)
                cls = enc["input_ids"][j].index(tokenizer.cls_token_id)
                a0 = answers["answer_start"][0]
                a1 = a0 + len(answers["text"][0])
                ctx = [k for k, s in enumerate(seq) if s == context_id]
                if not ctx or offsets[ctx[0]][0] > a0 or offsets[ctx[-1]][1] < a1:
                    starts.append(cls)
                    ends.append(cls)
                    continue
                s = next(k for k in ctx if offsets[k][1] > a0)
                e = next(k for k in reversed(ctx) if offsets[k][0] < a1)
                starts.append(s)
                ends.append(e)
            enc["start_positions"], enc["end_positions"] = starts, ends
            return enc

        return ds.map(encode, batched=True, remove_columns=ds.column_names, desc=f"tokenize {cfg.name}")

    def collator(self, tokenizer):
        def collate(features: list[dict]) -> dict:
            keys = [k for k in MODEL_KEYS if k in features[0]]
            return {k: torch.tensor([f[k] for f in features]) for k in keys}

        return collate

    def metric_inputs(self, cfg: TaskConfig, outputs: dict[str, torch.Tensor], eval_ds: Dataset,
                      features: Dataset) -> dict:
        predictions = postprocess(eval_ds, features, outputs["start_logits"].float().numpy(),
                                  outputs["end_logits"].float().numpy(), cfg.n_best, cfg.max_answer_length)
        references = [{"id": ex["id"], "answers": ex["answers"]} for ex in eval_ds]
        return {"predictions": [{"id": k, "prediction_text": v} for k, v in predictions.items()],
                "references": references}


def postprocess(examples: Dataset, features: Dataset, start_logits: np.ndarray, end_logits: np.ndarray,
                n_best: int, max_answer_length: int) -> dict[str, str]:
    """Best valid span per example over all its windows (start <= end, within the context)."""
    by_example: dict[str, list[int]] = {}
    for i, ex_id in enumerate(features["example_id"]):
        by_example.setdefault(ex_id, []).append(i)
    offsets_all = features["offset_mapping"]
    answers = {}
    for ex in examples:
        best, best_score = "", -np.inf
        for i in by_example.get(ex["id"], []):
            offsets = offsets_all[i]
            top_s = np.argsort(start_logits[i])[-n_best:][::-1]
            top_e = np.argsort(end_logits[i])[-n_best:][::-1]
            for s in top_s:
                for e in top_e:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = start_logits[i][s] + end_logits[i][e]
                    if score > best_score:
                        best_score = score
                        best = ex["context"][offsets[s][0]:offsets[e][1]]
        answers[ex["id"]] = best
    return answers


TASK_KINDS.register("qa")(QATask())
