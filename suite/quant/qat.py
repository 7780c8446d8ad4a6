"""`quant=qat`: quantization-aware training (Q8BERT / IBM Deep Compression) with an STE.

Weights and input activations of the prunable Linears are fake-quantized during fine-tuning at
`weight_bits` / `act_bits` (4 or 8), with learnable (LSQ) scales. IBM's techniques, each
switchable for ablation:
  zero_preserving  symmetric mid-tread grid: 0 -> 0 exactly, pruned weights stay 0
  scale_init       fp32: scales from the fp32 model (weight max-abs per channel, activations
                   calibrated on train batches); default: constant ranges ([-1, 1] weights,
                   [-8, 8] activations)
  dropout_schedule linear: every dropout annealed from its initial p to 0 by `dropout_end`
                   of training; none: unchanged
Composes with pruning: the pruning modifier masks the raw weight under the parametrization.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from suite.errors import ConfigError
from suite.lifecycle import Modifier, TrainState
from suite.prune.schedule import linear_anneal
from suite.quant import quantizers as Q
from suite.quant.base import QUANTIZERS, QuantConfig
from suite.quant.ptq import GRANULARITIES, check_bits

SCALE_INITS = ("fp32", "default")
DROPOUT_SCHEDULES = ("linear", "none")
DEFAULT_WEIGHT_AMAX, DEFAULT_ACT_AMAX = 1.0, 8.0


@dataclass
class QatConfig(QuantConfig):
    method: str = "qat"
    weight_bits: int = 8
    act_bits: int = 8
    granularity: str = "channel"
    zero_preserving: bool = True
    scale_init: str = "fp32"  # fp32 | default
    learn_scales: bool = True  # LSQ step sizes (else fixed at init)
    calibration: str = "percentile"  # activation-scale init from the fp32 model
    calib_batches: int = 4
    percentile: float = 99.99
    dropout_schedule: str = "linear"  # linear | none
    dropout_end: float = 1.0  # fraction of training where dropout reaches 0
    scale_lr_ratio: float = 0.1  # LSQ scales train at this x the weights' lr (10x lower)
    # On a gradually pruned model: QAT is a second phase of the cell, after the masks lock, with
    # `phase_steps` x the pruning phase's steps (Prune OFA: prune with KD, then QAT on the locked
    # pattern); false: fake-quant from step 0 together with the pruning ramp.
    after_lock: bool = True
    phase_steps: float = 1.0

    # IBM's techniques (key -> value when on): an ablation turns one off
    techniques = {"zero_preserving": True, "scale_init": "fp32", "dropout_schedule": "linear"}
    version = 2  # 2: QAT after the masks lock (second phase), LSQ scales at their own lr

    def per_channel(self) -> bool:
        return self.granularity == "channel"

    def __post_init__(self) -> None:
        check_bits(self)
        if self.granularity not in GRANULARITIES:
            raise ConfigError("quant.granularity", f"'{self.granularity}'; allowed: {', '.join(GRANULARITIES)}")
        if self.scale_init not in SCALE_INITS:
            raise ConfigError("quant.scale_init", f"'{self.scale_init}'; allowed: {', '.join(SCALE_INITS)}")
        if self.calibration not in Q.CALIBRATIONS:
            raise ConfigError("quant.calibration", f"'{self.calibration}'; allowed: {', '.join(Q.CALIBRATIONS)}")
        if self.dropout_schedule not in DROPOUT_SCHEDULES:
            raise ConfigError("quant.dropout_schedule",
                              f"'{self.dropout_schedule}'; allowed: {', '.join(DROPOUT_SCHEDULES)}")
        if not 0.0 < self.dropout_end <= 1.0:
            raise ConfigError("quant.dropout_end", f"{self.dropout_end}; must be in (0, 1]")
        if self.calib_batches < 1:
            raise ConfigError("quant.calib_batches", f"{self.calib_batches}; must be >= 1")
        if not 50.0 < self.percentile <= 100.0:  # as PTQ: 0 would clip every activation to 0
            raise ConfigError("quant.percentile", f"{self.percentile}; must be in (50, 100]")
        if not 0.0 < self.scale_lr_ratio <= 10.0:
            raise ConfigError("quant.scale_lr_ratio", f"{self.scale_lr_ratio}; must be in (0, 10]")
        if self.phase_steps <= 0:
            raise ConfigError("quant.phase_steps", f"{self.phase_steps}; must be > 0")


class ScheduledDropout(Modifier):
    """Anneal every nn.Dropout's p linearly to 0 by `end` of training (then restore after)."""

    def __init__(self, end: float = 1.0):
        self.end, self.initial = end, {}

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        self.initial = {m: m.p for m in model.modules() if isinstance(m, nn.Dropout)}

    def on_step_start(self, model: nn.Module, state: TrainState) -> None:
        for m, p0 in self.initial.items():
            m.p = linear_anneal(state.progress, p0, self.end)

    def on_train_end(self, model: nn.Module, state: TrainState) -> None:
        for m, p0 in self.initial.items():
            m.p = p0


class QATModifier(Modifier):
    def __init__(self, cfg: QatConfig, ctx, linears=None, phase: str | None = None):
        self.cfg, self.ctx, self.linears = cfg, ctx, linears
        self.phase = phase  # "after_lock": second phase of the cell (suite/train.py)
        self.scale_lr_ratio = cfg.scale_lr_ratio

    def phase_steps(self, first_phase_steps: int) -> int:
        return max(1, int(round(self.cfg.phase_steps * first_phase_steps)))

    def on_train_start(self, model: nn.Module, state: TrainState) -> None:
        from suite.prune.modifier import raw_weight, resolve_linears
        from suite.quant import fakequant as F

        c = self.cfg
        self.linears = self.linears or resolve_linears(model)
        if c.scale_init == "fp32":
            device = next(model.parameters()).device
            batches = F.take_batches(self.ctx.train_loader, c.calib_batches)
            amax = F.calibrate_activations(model, self.linears, batches, c.calibration, c.act_bits,
                                           c.percentile, device)
            scales = {n: Q.weight_scale(raw_weight(m), c.weight_bits, c.granularity, c.zero_preserving)
                      for n, m in self.linears.items()}
        else:
            amax = {n: DEFAULT_ACT_AMAX for n in self.linears}
            scales = {}
            for n, m in self.linears.items():
                shape = (m.out_features, 1) if c.granularity == "channel" else ()
                scales[n] = torch.full(shape, DEFAULT_WEIGHT_AMAX / Q.qmax(c.weight_bits, c.zero_preserving))
        F.attach(self.linears, scales, amax, c.weight_bits, c.act_bits, c.zero_preserving, c.learn_scales)


def runs_after_lock(cfg: QatConfig, run) -> bool:
    """QAT is a second phase when the cell prunes gradually in this run (transfer cells start
    with their masks locked: one phase)."""
    return bool(cfg.after_lock and run.sparsity.prunes and run.stage == "finetune")


@QUANTIZERS.register("qat", config=QatConfig)
def build_qat(cfg: QatConfig, ctx) -> list:
    phase = "after_lock" if runs_after_lock(cfg, ctx.cfg) else None
    mods: list[Modifier] = [QATModifier(cfg, ctx, phase=phase)]
    if cfg.dropout_schedule == "linear":
        drop = ScheduledDropout(cfg.dropout_end)
        drop.phase = phase
        mods.append(drop)
    return mods
