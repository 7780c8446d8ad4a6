"""Dense small baselines: keep every k-th encoder layer and/or a narrower FFN (pure surgery)."""

from __future__ import annotations

import torch
from torch import nn

from suite.config import ModelConfig


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, model.base_model_prefix)
    encoder = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    return encoder.layer if hasattr(encoder, "layer") else encoder.layers


def shrink(model: nn.Module, cfg: ModelConfig) -> nn.Module:
    if cfg.shrink_keep_every > 1:
        layers = encoder_layers(model)
        kept = [layer for i, layer in enumerate(layers) if i % cfg.shrink_keep_every == cfg.shrink_keep_every - 1]
        layers[:] = nn.ModuleList(kept)
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
