"""`quant=ptq`: post-training int8 (IntelCaffe-style): fine-tuned fp32 model, then calibrated
weight and input-activation fake-quant on the prunable Linears; no retraining."""

from __future__ import annotations

from dataclasses import dataclass

from suite.errors import ConfigError
from suite.lifecycle import Modifier, TrainState
from suite.quant import quantizers as Q
from suite.quant.base import QUANTIZERS, QuantConfig

GRANULARITIES = ("channel", "tensor")
FP32_SOURCES = ("train", "teacher")


def check_bits(cfg) -> None:
    for key, bits in (("weight_bits", cfg.weight_bits), ("act_bits", cfg.act_bits)):
        if bits not in Q.BITS:
            raise ConfigError(f"quant.{key}", f"{bits}; allowed: 4, 8 (quant=fp32 for 32)")


@dataclass
class PtqConfig(QuantConfig):
    method: str = "ptq"
    weight_bits: int = 8
    act_bits: int = 8
    granularity: str = "channel"  # weights: channel (per output row) | tensor
    calibration: str = "maxabs"  # activations: maxabs | percentile | entropy (KL)
    calib_batches: int = 8  # train batches observed
    percentile: float = 99.99  # for calibration=percentile
    # train: fine-tune fp32 in this cell, then calibrate | teacher: calibrate the cached dense
    # fp32 fine-tune of the same config (the teacher; identical model, no training repeated)
    fp32_source: str = "train"
    # Activations (IntelCaffe): unsigned 8-bit asymmetric for inputs that are non-negative or
    # skewed (min >= -unsigned_skew * max: after GELU), signed symmetric elsewhere; null: all signed
    unsigned_skew: float | None = 0.1

    version = 2  # 2: unsigned asymmetric activations after GELU; one HistogramObserver for every calibration

    def __post_init__(self) -> None:
        check_bits(self)
        if self.unsigned_skew is not None and not 0.0 <= self.unsigned_skew < 1.0:
            raise ConfigError("quant.unsigned_skew", f"{self.unsigned_skew}; must be in [0, 1) or null")
        if self.granularity not in GRANULARITIES:
            raise ConfigError("quant.granularity", f"'{self.granularity}'; allowed: {', '.join(GRANULARITIES)}")
        if self.calibration not in Q.CALIBRATIONS:
            raise ConfigError("quant.calibration", f"'{self.calibration}'; allowed: {', '.join(Q.CALIBRATIONS)}")
        if self.calib_batches < 1:
            raise ConfigError("quant.calib_batches", f"{self.calib_batches}; must be >= 1")
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError("quant.percentile", f"{self.percentile}; must be in (50, 100]")
        if self.fp32_source not in FP32_SOURCES:
            raise ConfigError("quant.fp32_source", f"'{self.fp32_source}'; allowed: {', '.join(FP32_SOURCES)}")

    def per_channel(self) -> bool:
        return self.granularity == "channel"

    def check_run(self, run) -> None:
        if self.fp32_source == "teacher" and (
                run.sparsity.method != "dense" or run.distill.method != "none"
                or run.model.shrink_keep_every != 1 or run.model.shrink_intermediate):
            raise ConfigError("quant.fp32_source", "teacher only for dense, undistilled, unshrunk cells; use train")


class PTQModifier(Modifier):
    def __init__(self, cfg: PtqConfig, ctx, linears=None):
        self.cfg, self.ctx, self.linears = cfg, ctx, linears
        self.amax: dict[str, float] = {}  # activation ranges, once calibrated (on_train_end)
        self.unsigned: list[str] = []

    def on_train_start(self, model, state: TrainState) -> None:
        if self.cfg.fp32_source == "teacher":
            model.load_state_dict(self.ctx.teacher().state_dict())
            state.stop_training = True

    def on_train_end(self, model, state: TrainState) -> None:
        from suite.prune.modifier import raw_weight, resolve_linears
        from suite.quant import fakequant as F

        c = self.cfg
        linears = self.linears or resolve_linears(model)
        device = next(model.parameters()).device
        batches = F.take_batches(self.ctx.train_loader, c.calib_batches)
        amax, lows = F.calibrate_ranges(model, linears, batches, c.calibration, c.act_bits, c.percentile,
                                        device, c.unsigned_skew)
        scales = {n: Q.weight_scale(raw_weight(m), c.weight_bits, c.granularity) for n, m in linears.items()}
        F.attach(linears, scales, amax, c.weight_bits, c.act_bits, zero_preserving=True, learn=False, act_lo=lows)
        self.amax, self.unsigned = amax, sorted(lows)

    def metrics(self, model) -> dict[str, float]:
        a = list(self.amax.values())
        if not a:
            return {}
        return {"quant_act_amax_mean": sum(a) / len(a), "quant_act_unsigned_layers": float(len(self.unsigned))}


@QUANTIZERS.register("ptq", config=PtqConfig)
def build_ptq(cfg: PtqConfig, ctx) -> list:
    return [PTQModifier(cfg, ctx)]
