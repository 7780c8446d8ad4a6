"""Dense small baselines: keep every k-th encoder layer and/or a narrower FFN (pure surgery)."""

from __future__ import annotations

import torch
from torch import nn

from suite.config import ModelConfig


def _encoder(model: nn.Module) -> tuple[nn.Module, str]:
    base = getattr(model, model.base_model_prefix)
    encoder = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    return encoder, ("layer" if hasattr(encoder, "layer") else "layers")


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    encoder, attr = _encoder(model)
    return getattr(encoder, attr)


def shrink(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    if cfg.shrink_keep_every > 1:
        layers = encoder_layers(model)
        kept = [layer for i, layer in enumerate(layers) if i % cfg.shrink_keep_every == cfg.shrink_keep_every - 1]
        encoder, attr = _encoder(model)
        setattr(encoder, attr, nn.ModuleList(kept))
        model.config.num_hidden_layers = len(kept)
    if cfg.shrink_intermediate:
        for layer in encoder_layers(model):
            _narrow_ffn(layer, cfg.shrink_intermediate)
        model.config.intermediate_size = cfg.shrink_intermediate
    return model


@torch.no_grad()
def _narrow_ffn(layer: nn.Module, width: int) -> None:
    """Keep the `width` FFN neurons with the largest weight norm (in and out)."""
    up, down = layer.intermediate.dense, layer.output.dense
    score = up.weight.norm(dim=1) * down.weight.norm(dim=0)
    keep = score.topk(min(width, score.numel())).indices.sort().values
    new_up = nn.Linear(up.in_features, len(keep))
    new_up.weight.copy_(up.weight[keep])
    new_up.bias.copy_(up.bias[keep])
    new_down = nn.Linear(len(keep), down.out_features)
    new_down.weight.copy_(down.weight[:, keep])
    new_down.bias.copy_(down.bias)
    layer.intermediate.dense, layer.output.dense = new_up, new_down


# ----------------------------------------------------------------------------- size matching
def encoder_linear_params(layers: int, hidden: int, intermediate: int) -> int:
    """Weights of a BERT encoder's Linear layers (q, k, v, attention out, FFN up and down)."""
    return layers * (4 * hidden * hidden + 2 * hidden * intermediate)


def matching_shrink(layers: int, hidden: int, intermediate: int, sparsity: float,
                    keep_every: int | None = None) -> tuple[int, int]:
    """(shrink_keep_every, shrink_intermediate) of a dense model whose encoder Linear weights
    match the nonzero count of the full model at `sparsity` (S1: sparse vs small at equal size).

    Keeps as many layers as fit (or every `keep_every`-th), then narrows the FFN to fill the
    budget. E.g. MiniLM-L6 (6, 384, 1536) at 90%: (4, 614) -> 1 layer, FFN 614 (conf/model/
    minilm_small.yaml keeps the last layer instead: keep_every=6, same size)."""
    budget = (1.0 - sparsity) * encoder_linear_params(layers, hidden, intermediate)
    if keep_every is None:
        keep_every = next(k for k in range(1, layers + 1)
                          if layers // k * 4 * hidden * hidden < budget or k == layers)
    kept = layers // keep_every
    width = int(round((budget / kept - 4 * hidden * hidden) / (2 * hidden)))
    if width < 1:
        raise ValueError(f"no dense shape of {kept} layers fits {budget:.0f} weights")
    return keep_every, min(width, intermediate)
