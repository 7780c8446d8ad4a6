"""The student as one safetensors file that reloads into the exact model the cell evaluated.

Tensors carry the plain Hugging Face names. Each fake-quantized Linear (`suite.quant.fakequant`)
stores its effective weight as integer codes (int8, also for 4-bit grids) with ``weight_scale``
(the scale its forward used), when codes x scale give that weight bit for bit (zero-preserving
grids); otherwise the effective fp32 weight. Its input quantizer is ``input_scale`` and
``input_zero_point`` (the raw parameters) plus, in the manifest, its bits, grid and flags, and is
rebuilt as the same module, so the reloaded forward runs the cell's own code. Pruned weights are
zeros (masks applied). Dense Linears and everything else are fp32 as trained.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

FILE = "model.safetensors"


def quantized_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Linears with a weight fake-quant parametrization or an input fake-quant."""
    from torch.nn.utils import parametrize

    return {n: m for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and (parametrize.is_parametrized(m, "weight") or hasattr(m, "act_quant"))}


@torch.no_grad()
def weight_codes(weight: torch.Tensor, wfq) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(int8 codes, scale) with codes * scale == `weight` exactly, or None (e.g. a mid-rise grid)."""
    from suite.quant import quantizers as Q

    if wfq is None or not wfq.zero_preserving:
        return None
    scale = wfq.lsq_scale.detach().float()
    if wfq.learn:
        scale = Q._grad_scale(scale, Q.lsq_grad_scale(weight.numel() // max(1, scale.numel()), wfq.bits))
    scale = scale.clamp_min(1e-12)
    q = Q.qmax(wfq.bits, True)
    codes = torch.clamp(torch.round(weight / scale), -q, q)
    if not torch.equal(codes * scale, weight):
        return None
    return codes.to(torch.int8), scale


@torch.no_grad()
def student_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """(tensors, per-layer quant facts) of the model as the cell evaluated it."""
    from suite.measure import plain_fp32
    from suite.quant.fakequant import weight_fake_quant

    tensors = {k: v.detach().cpu().contiguous() for k, v in plain_fp32(model).state_dict().items()}
    facts: dict[str, dict] = {}
    for name, mod in quantized_linears(model).items():
        mod = copy.deepcopy(mod).cpu().float()
        wfq, afq, fact = weight_fake_quant(mod), getattr(mod, "act_quant", None), {}
        weight = mod.weight.detach()
        if wfq is not None:
            fact.update(weight_bits=wfq.bits, weight_zero_preserving=bool(wfq.zero_preserving))
            coded = weight_codes(weight, wfq)
            if coded is not None:
                tensors[f"{name}.weight"], tensors[f"{name}.weight_scale"] = coded[0], coded[1].contiguous()
            fact["weight_codes"] = coded is not None
        if afq is not None:
            tensors[f"{name}.input_scale"] = afq.lsq_scale.detach().float().reshape(()).clone()
            tensors[f"{name}.input_zero_point"] = afq.zero_point.detach().float().reshape(()).clone()
            fact.update(act_bits=afq.bits, act_signed=bool(afq.signed),
                        act_zero_preserving=bool(afq.zero_preserving), act_learn=bool(afq.learn))
        facts[name] = fact
    return tensors, facts


def write(model: nn.Module, directory: Path) -> dict:
    """Write ``DIR/model.safetensors``; returns the manifest entry (file, per-layer quant facts)."""
    from safetensors.torch import save_file

    tensors, facts = student_tensors(model)
    save_file(tensors, str(directory / FILE), metadata={"format": "pt"})
    return {"file": FILE, "quant": facts}


@torch.no_grad()
def load(directory: str | Path) -> nn.Module:
    """The cell's model from a bundle's safetensors entry: fp32 torch with the same fake-quant
    inputs (eval mode); its predictions are the cell's own, bit for bit."""
    from safetensors.torch import load_file

    from kernels.bundle import BundleError, build_architecture, checked_file, read_manifest
    from suite.quant.fakequant import ActFakeQuant, _act_hook

    manifest = read_manifest(directory)
    entry = (manifest.get("formats") or {}).get("safetensors")
    if not entry:
        raise BundleError(f"{directory}: no safetensors model in this directory")
    tensors = load_file(str(checked_file(directory, manifest, entry["file"])))
    model = build_architecture(directory, manifest)
    facts = entry.get("quant") or {}
    for name, fact in facts.items():
        w = tensors.get(f"{name}.weight")
        if w is not None and fact.get("weight_codes"):
            tensors[f"{name}.weight"] = w.float() * tensors.pop(f"{name}.weight_scale")
    state = {k: v for k, v in tensors.items() if not k.endswith((".input_scale", ".input_zero_point"))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k in model.state_dict() and not _buffer_default(model, k)]
    if missing or unexpected:
        raise BundleError(f"{entry['file']}: tensors do not fit the architecture (missing "
                          f"{missing[:1]}, unexpected {unexpected[:1]})")
    for name, fact in facts.items():
        if "act_bits" not in fact:
            continue
        mod = model.get_submodule(name)
        aq = ActFakeQuant(1.0, fact["act_bits"], fact["act_zero_preserving"] or not fact["act_signed"],
                          fact["act_learn"], lo=None if fact["act_signed"] else 0.0)
        aq.zero_preserving = fact["act_zero_preserving"]
        aq.lsq_scale.data = tensors[f"{name}.input_scale"].clone()
        aq.zero_point = tensors[f"{name}.input_zero_point"].clone()
        mod.act_quant = aq
        mod.register_forward_pre_hook(_act_hook)
    return model.eval()


def _buffer_default(model: nn.Module, key: str) -> bool:
    """Non-trained buffers the architecture builds itself (e.g. position ids) may be absent."""
    return key in dict(model.named_buffers()) and key.endswith(("position_ids", "token_type_ids"))
