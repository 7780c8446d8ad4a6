"""The fine-tuning loop: seeded, deterministic on CPU, with modifier hooks and a progress bar."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from suite.config import ProfileConfig, TrainConfig
from suite.lifecycle import Modifier, TrainState

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "lsq_scale")


def train_loader(features, collate: Callable, batch_size: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(features, batch_size=batch_size, shuffle=True, generator=generator,
                      collate_fn=collate, drop_last=False)


def total_steps(n_batches: int, train: TrainConfig, profile: ProfileConfig) -> int:
    epochs = profile.epochs if profile.epochs is not None else train.epochs
    steps = max(1, math.ceil(n_batches * epochs * profile.budget))  # budget: x the recipe's steps
    return min(steps, math.ceil(profile.max_steps * profile.budget)) if profile.max_steps else steps


def make_optimizer(model: nn.Module, train: TrainConfig, steps: int, lr: float | None = None):
    from transformers import get_linear_schedule_with_warmup

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if not n.endswith(NO_DECAY)], "weight_decay": train.weight_decay},
        {"params": [p for n, p in params if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr or train.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(train.warmup_ratio * steps), steps)
    return optimizer, scheduler


def fine_tune(model: nn.Module, loader: DataLoader, train: TrainConfig, profile: ProfileConfig,
              modifiers: Sequence[Modifier] = (), device: torch.device = torch.device("cpu"),
              progress: bool = True, desc: str = "train") -> dict[str, float]:
    """Train `model` in place; returns train_loss (mean of the last 50 steps), steps, seconds."""
    steps = total_steps(len(loader), train, profile)
    state = TrainState(total_steps=steps)
    model.to(device).train()
    for m in modifiers:
        m.on_train_start(model, state)
    # after on_train_start: modifiers may add parameters (e.g. QAT's learnable scales)
    optimizer, scheduler = make_optimizer(model, train, steps, profile.lr)
    extra = {}
    for m in modifiers:
        extra.update(m.forward_kwargs())
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=not progress, dynamic_ncols=True)
    while state.step < steps and not state.stop_training:
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            for m in modifiers:
                m.on_step_start(model, state)
            outputs = model(**batch, **extra)
            loss = outputs.loss
            for m in modifiers:
                loss = m.loss(model, batch, outputs, loss, state)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {state.step}")
            loss.backward()
            if train.max_grad_norm:
                nn.utils.clip_grad_norm_(model.parameters(), train.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            for m in modifiers:
                m.on_step_end(model, state)
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
            if state.step >= steps:
                break
        state.epoch += 1
    bar.close()
    for m in modifiers:
        m.on_train_end(model, state)
    tail = losses[-50:]  # empty when no step ran (PTQ of the cached teacher): no train_loss, never NaN
    return {**({"train_loss": sum(tail) / len(tail)} if tail else {}), "train_steps": float(state.step),
            "train_seconds": time.perf_counter() - start, **state.logs}
