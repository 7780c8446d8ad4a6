"""Batched inference over a featurized eval set, then the task's metrics."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from suite.config import TaskConfig
from suite.metrics import compute_metrics
from suite.quiet import yield_to_timer


@torch.no_grad()
def predict(model: nn.Module, features, collate: Callable, batch_size: int, output_keys: tuple,
            device: torch.device | None = None, progress: bool = False) -> dict[str, torch.Tensor]:
    device = device or torch.device("cpu")
    model.to(device).eval()
    loader = DataLoader(features, batch_size=batch_size, shuffle=False, collate_fn=collate)
    collected: dict[str, list[torch.Tensor]] = {k: [] for k in output_keys}
    for batch in tqdm(loader, desc="eval", disable=not progress, dynamic_ncols=True):
        yield_to_timer()
        batch = {k: v.to(device) for k, v in batch.items()
                 if k not in ("labels", "start_positions", "end_positions")}
        outputs = model(**batch)
        for k in output_keys:
            collected[k].append(outputs[k].detach().cpu())
    return {k: torch.cat(v) for k, v in collected.items()}


def evaluate_model(model: nn.Module, task_kind, task: TaskConfig, eval_ds, features, collate: Callable,
                   batch_size: int, device: torch.device, progress: bool = False) -> dict[str, float]:
    return evaluate_with_outcomes(model, task_kind, task, eval_ds, features, collate, batch_size, device,
                                  progress)[0]


def evaluate_with_outcomes(model: nn.Module, task_kind, task: TaskConfig, eval_ds, features, collate: Callable,
                           batch_size: int, device: torch.device, progress: bool = False) -> tuple[dict, dict]:
    """(metrics, outcomes): the task's metrics and what the model predicted on each eval example
    (suite/outcomes.py), so the report can pair this eval with any other on the same examples."""
    from suite import outcomes

    outputs = predict(model, features, collate, batch_size, task_kind.output_keys, device, progress)
    inputs = task_kind.metric_inputs(task, outputs, eval_ds, features)
    metrics = compute_metrics(task, **inputs)
    metrics["eval_primary_chance"] = chance_primary(task, inputs)
    return metrics, outcomes.build(task, inputs, eval_ds.to_list())


def chance_primary(task: TaskConfig, inputs: dict) -> float:
    """eval_primary of a constant predictor on this eval set: the majority class (classification;
    e.g. its rate x 100 for accuracy, 0 for MCC); 0 for regression and QA."""
    if task.kind != "classification" or not inputs["references"]:
        return 0.0
    refs = list(inputs["references"])
    majority = max(sorted(set(refs)), key=refs.count)
    return compute_metrics(task, predictions=[majority] * len(refs), references=refs)["eval_primary"]
