"""The fine-tuning loop: seeded, deterministic on CPU, with modifier hooks and a progress bar.

Recipe pieces that live here (each a config option, see conf/train/default.yaml):
- `train.lr_schedule`: linear (warm-up, then linear decay) | rewind (warm-up, lr held while the
  pruning ramp runs, then linear decay: Prune OFA's `--lr_rewind`); the ramp's end comes from the
  modifiers (`lr_hold_until`).
- `train.group_by_length`: batches of similar length (less padding), seeded.
- Two phases in one cell: modifiers with `phase = "after_lock"` (QAT on a sparse model) train in a
  second phase that starts from the first phase's model with its pruning masks locked; the
  distiller (`carry = True`) goes on in both phases.
- LSQ scales (`lsq_scale` parameters) get their own lr: `lr * scale_lr_ratio` of a modifier.
- One step = one global batch of `train.batch_size`, shared by the processes of a torchrun cell and
  cut into micro-batches (gradient accumulation, `train.micro_batch_size`): suite/distributed.py.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from suite import distributed
from suite.config import ProfileConfig, TrainConfig
from suite.distributed import SINGLE, World
from suite.lifecycle import Modifier, TrainState
from suite.quiet import yield_to_timer

log = logging.getLogger("sparq.train")

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "lsq_scale")
INDEX_KEY = "example_idx"  # position of each example in the train features (teacher-output cache)
CPU = torch.device("cpu")


class Indexed(Dataset):
    """Features that also yield their position (so cached teacher outputs can be looked up)."""

    def __init__(self, features):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int):
        return i, self.features[i]


def _indexed_collate(collate: Callable) -> Callable:
    def run(items):
        batch = collate([item for _, item in items])
        batch[INDEX_KEY] = torch.tensor([i for i, _ in items], dtype=torch.long)
        return batch

    return run


def feature_lengths(features) -> list[int]:
    column = features["input_ids"] if hasattr(features, "column_names") else [f["input_ids"] for f in features]
    return [len(ids) for ids in column]


def train_loader(features, collate: Callable, batch_size: int, seed: int, *, group_by_length: bool = False,
                 index: bool = False) -> DataLoader:
    """Shuffled, seeded batches; `group_by_length`: megabatches of 50 batches sorted by length
    (transformers' LengthGroupedSampler); `index`: each batch carries `example_idx`."""
    generator = torch.Generator().manual_seed(seed)
    dataset, fn = (Indexed(features), _indexed_collate(collate)) if index else (features, collate)
    if group_by_length:
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = LengthGroupedSampler(batch_size, lengths=feature_lengths(features), generator=generator)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=fn, drop_last=False)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator,
                      collate_fn=fn, drop_last=False)


def total_steps(n_batches: int, train: TrainConfig, profile: ProfileConfig) -> int:
    """Optimizer steps: epochs x batches, times `profile.budget` (verdicts, issue 14: more epochs
    over the same subset; the `max_steps` cap is scaled too)."""
    epochs = profile.epochs if profile.epochs is not None else train.epochs
    budget = getattr(profile, "budget", 1.0)
    steps = max(1, math.ceil(n_batches * epochs * budget))
    return min(steps, math.ceil(profile.max_steps * budget)) if profile.max_steps else steps


def lr_factor(step: int, total: int, warmup: int, hold_until: int | None = None) -> float:
    """Multiplier of the peak lr at `step`: linear warm-up to 1, held at 1 until `hold_until`
    (rewind), then linear decay to 0 at `total`."""
    if step < warmup:
        return step / max(1, warmup)
    decay_from = max(warmup, hold_until or 0)
    if step < decay_from:
        return 1.0
    return max(0.0, (total - step) / max(1, total - decay_from))


def lr_hold_steps(modifiers: Sequence[Modifier], steps: int) -> int | None:
    holds = [h for m in modifiers if (h := m.lr_hold_until(steps)) is not None]
    return max(holds) if holds else None


def make_optimizer(model: nn.Module, train: TrainConfig, steps: int, lr: float | None = None,
                   hold_until: int | None = None, scale_lr_ratio: float = 1.0):
    """AdamW (no decay on biases, norms and LSQ scales; LSQ scales at `scale_lr_ratio` x lr) and
    the lr schedule of `train.lr_schedule` (`hold_until` only used by rewind)."""
    lr = lr or train.lr
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    scales = [p for n, p in params if n.endswith("lsq_scale")]
    rest = [(n, p) for n, p in params if not n.endswith("lsq_scale")]
    groups = [
        {"params": [p for n, p in rest if not n.endswith(NO_DECAY)], "weight_decay": train.weight_decay},
        {"params": [p for n, p in rest if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]
    if scales:
        groups.append({"params": scales, "weight_decay": 0.0, "lr": lr * scale_lr_ratio})
    optimizer = torch.optim.AdamW(groups, lr=lr)
    warmup = int(train.warmup_ratio * steps)
    hold = hold_until if getattr(train, "lr_schedule", "linear") == "rewind" else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps, warmup, hold))
    return optimizer, scheduler


def fine_tune(model: nn.Module, loader: DataLoader, train: TrainConfig, profile: ProfileConfig,
              modifiers: Sequence[Modifier] = (), device: torch.device = CPU,
              progress: bool = True, desc: str = "train", world: World = SINGLE) -> dict[str, float]:
    """Train `model` in place; returns train_loss (mean of the last 50 steps), steps, seconds,
    seconds per step (the log line also says steps/s). With `after_lock` modifiers: two phases (see the module docstring).
    `world`: the processes that train it together (suite/distributed.py; one process by default)."""
    first = [m for m in modifiers if m.phase != "after_lock"]
    second = [m for m in modifiers if m.phase == "after_lock"]
    steps = total_steps(len(loader), train, profile)
    stats = _train(model, loader, train, profile, first, device, progress, desc, steps, world)
    if not second:
        return stats
    from suite.prune.modifier import LockedMaskModifier

    locked = [LockedMaskModifier(m.masks, m.linears) for m in first if isinstance(m, LockedMaskModifier)]
    carried = [m for m in first if m.carry]
    steps2 = next(int(n) for m in second if (n := m.phase_steps(steps)) is not None)
    stats2 = _train(model, loader, train, profile, [*locked, *carried, *second], device, progress,
                    f"{desc} (after lock)", steps2, world)
    return {**stats, **stats2, "train_steps": stats["train_steps"] + stats2["train_steps"],
            "train_seconds": stats["train_seconds"] + stats2["train_seconds"],
            "train_steps_phase1": stats["train_steps"], "train_steps_phase2": stats2["train_steps"],
            "train_seconds_per_step": (stats["train_seconds"] + stats2["train_seconds"])
            / max(1.0, stats["train_steps"] + stats2["train_steps"])}


def _train(model: nn.Module, loader: DataLoader, train: TrainConfig, profile: ProfileConfig,
           modifiers: Sequence[Modifier], device: torch.device, progress: bool, desc: str,
           steps: int, world: World = SINGLE) -> dict[str, float]:
    state = TrainState(total_steps=steps)
    model.to(device).train()
    for m in modifiers:
        m.on_train_start(model, state)
    # after on_train_start: modifiers may add parameters (e.g. QAT's learnable scales)
    ratio = min([m.scale_lr_ratio for m in modifiers] or [1.0])
    optimizer, scheduler = make_optimizer(model, train, steps, profile.lr, lr_hold_steps(modifiers, steps), ratio)
    extra = {}
    for m in modifiers:
        extra.update(m.forward_kwargs())
    net = distributed.wrap(model, world, device)  # DDP across the cell's processes (the model itself for one)
    _, accumulation = distributed.layout(train.batch_size, world.size, getattr(train, "micro_batch_size", None))
    distributed.seed_rank(world)
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=not (progress and world.main), dynamic_ncols=True)
    while state.step < steps and not state.stop_training:
        for batch in loader:
            yield_to_timer()  # another cell on this machine is timing: let it have the CPUs
            for m in modifiers:
                m.on_step_start(model, state)
            loss = _forward_backward(net, model, batch, modifiers, extra, state, device, world, accumulation,
                                     train.precision)
            if not torch.isfinite(loss):  # the same value on every rank: all of them stop
                raise FloatingPointError(f"loss is {loss.item()} at step {state.step}")
            for m in modifiers:  # every micro-batch's backward is done: the step's whole gradient
                m.after_backward(model, state)
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
    seconds = time.perf_counter() - start
    for m in modifiers:
        m.on_train_end(model, state)
    distributed.check_in_step(model, world)
    tail = losses[-50:]  # empty when no step ran (PTQ of the cached teacher): no train_loss, never NaN
    rate = state.step / max(1e-9, seconds)
    if state.step:
        log.info("%s: %d steps in %.1f s: %.3f steps/s (%.3f s/step)", desc, state.step, seconds, rate,
                 seconds / state.step)
    return {**({"train_loss": sum(tail) / len(tail)} if tail else {}), "train_steps": float(state.step),
            "train_seconds": seconds, "train_seconds_per_step": seconds / max(1, state.step), **state.logs}


def _forward_backward(net: nn.Module, model: nn.Module, batch: dict, modifiers: Sequence[Modifier], extra: dict,
                      state: TrainState, device: torch.device, world: World, accumulation: int,
                      precision: str = "fp32") -> torch.Tensor:
    """Forward and backward of this rank's micro-batches of one global batch; returns the global
    batch's mean loss (summed over ranks). Each micro-batch's loss is scaled by its share of the
    global batch x processes (DDP averages), so the gradient is the global batch's; for one process
    without accumulation the scale is exactly 1."""
    parts = distributed.rank_slices(distributed.batch_length(batch), world, accumulation)
    total = torch.zeros((), device=device)
    for i, (begin, end, share) in enumerate(parts):
        micro = {k: v.to(device) for k, v in distributed.slice_batch(batch, begin, end).items()}
        state.batch_index = micro.pop(INDEX_KEY, None)  # for cached teacher outputs
        with distributed.gradient_sync(net, i == len(parts) - 1):
            with distributed.autocast(device, precision):
                outputs = net(**micro, **extra)
                loss = outputs.loss
                for m in modifiers:
                    loss = m.loss(model, micro, outputs, loss, state)
            (loss * (share * world.size)).backward()  # pruned weights: gradient zeroed by the pruning modifier's hook
        total += loss.detach().float() * share
    return distributed.reduce_sum(total, world)
