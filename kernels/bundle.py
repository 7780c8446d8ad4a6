"""A whole model on the packed kernels, as a directory: ``load_model(DIR)`` returns it ready to run.

A bundle is a Hugging Face model directory (``config.json``, tokenizer files) plus::

    sparq.json          manifest: head class, attention implementation, which files hold what,
                        the packed layers' activation quantization, sha256 of every file
    encoder.sparqpk     the packed Linear layers (``kernels.save``: checked container)
    <rest>.safetensors  every other tensor (embeddings, LayerNorms, head); tensors of the packed
                        layers in it, if any, are ignored

``write_packed(model, DIR)`` writes the packed file of a converted model and returns its manifest
entry; the caller (``suite.export``) writes the rest. Only safetensors and our own container are
read (no pickle), and each file is checked against the manifest's sha256 before it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from torch import nn

from .io import load as load_layers
from .io import save as save_layers
from .linear import SparseInt8Linear, packed_layers

MANIFEST = "sparq.json"
PACKED_FILE = "encoder.sparqpk"
BUNDLE_VERSION = 1
HEADS = {"sequence_classification": "AutoModelForSequenceClassification",
         "question_answering": "AutoModelForQuestionAnswering", "base": "AutoModel"}


class BundleError(ValueError):
    """A model directory that is incomplete, altered or not a sparq bundle (one-line message)."""


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_packed(model: nn.Module, directory: str | os.PathLike) -> dict:
    """Write the packed layers of a converted (unfused) model to ``DIR/encoder.sparqpk``; returns
    the manifest's ``packed`` entry: file, per-layer format, bits and activation quantization."""
    layers = packed_layers(model)
    if not layers:
        raise BundleError("the model has no packed layer (convert it with kernels.convert_model)")
    save_layers(Path(directory) / PACKED_FILE, layers)
    mods = {n: m for n, m in model.named_modules() if isinstance(m, SparseInt8Linear)}
    return {"file": PACKED_FILE, "layers": {
        n: {"format": m.packed.format, "bits": m.packed.bits, "act_scale": m.act_scale, "act_qmax": m.act_qmax}
        for n, m in mods.items()}}


def read_manifest(directory: str | os.PathLike) -> dict:
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BundleError(f"{directory}: not a sparq model directory ({MANIFEST}: "
                          f"{getattr(e, 'strerror', None) or e})") from None
    if not isinstance(manifest, dict) or manifest.get("sparq_bundle") != BUNDLE_VERSION:
        raise BundleError(f"{path}: bundle version {manifest.get('sparq_bundle') if isinstance(manifest, dict) else '?'}"
                          f", this code reads {BUNDLE_VERSION}")
    return manifest


def checked_file(directory: str | os.PathLike, manifest: dict, name: str) -> Path:
    """``DIR/name``, present and with the sha256 the manifest gives (a plain file name only)."""
    if not isinstance(name, str) or Path(name).name != name:
        raise BundleError(f"{MANIFEST}: bad file name {name!r}")
    path = Path(directory) / name
    if not path.is_file():
        raise BundleError(f"{directory}: {name} is missing")
    want = (manifest.get("sha256") or {}).get(name)
    if want is None:
        raise BundleError(f"{MANIFEST}: no sha256 for {name}")
    if file_sha256(path) != want:
        raise BundleError(f"{path}: sha256 differs from {MANIFEST} (altered or truncated)")
    return path


def build_architecture(directory: str | os.PathLike, manifest: dict) -> nn.Module:
    """The model class of the manifest's head from ``config.json`` (weights not read yet)."""
    import transformers

    head = manifest.get("head")
    if head not in HEADS:
        raise BundleError(f"{MANIFEST}: head {head!r}; known: {', '.join(HEADS)}")
    config = transformers.AutoConfig.from_pretrained(str(directory), local_files_only=True,
                                                     trust_remote_code=False)
    cls = getattr(transformers, HEADS[head])
    attn = manifest.get("attn_implementation") or "eager"
    return cls.from_config(config, attn_implementation=attn).float().eval()


def load_rest(model: nn.Module, path: Path, skip: set[str]) -> None:
    """Every tensor of ``model`` outside the ``skip`` modules, from a safetensors file (strict)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    inside = lambda key: any(key == s or key.startswith(s + ".") for s in skip)  # noqa: E731
    want = [k for k in model.state_dict() if not inside(k)]
    missing = [k for k in want if k not in tensors]
    if missing:
        raise BundleError(f"{path.name}: {len(missing)} tensor(s) missing, e.g. {missing[0]}")
    state = model.state_dict()
    odd = [k for k in want if tensors[k].dtype != state[k].dtype or tensors[k].shape != state[k].shape]
    if odd:
        raise BundleError(f"{path.name}: {odd[0]} is {tensors[odd[0]].dtype} {tuple(tensors[odd[0]].shape)}, "
                          f"the architecture wants {state[odd[0]].dtype} {tuple(state[odd[0]].shape)}")
    model.load_state_dict({k: tensors[k] for k in want}, strict=False)


def load_model(directory: str | os.PathLike, fuse: bool = True, path: str | None = None) -> nn.Module:
    """The bundle's model (eval mode) with its compressed Linears on the packed int8 kernels;
    ``fuse``: the encoder fusions the timed models run (``fuse_for_inference``; same numerics up to
    float rounding); ``path``: force a kernel path (default: the best this CPU runs)."""
    model, layers = _with_packed(directory)
    for name, (p, info) in layers.items():
        _swap(model, name, SparseInt8Linear(p, act_scale=info.get("act_scale"), path=path,
                                            act_qmax=info.get("act_qmax")))
    model.eval()
    if fuse:
        from .encoder import fuse_for_inference

        fuse_for_inference(model)
    return model


def load_fp32_twin(directory: str | os.PathLike) -> nn.Module:
    """The same architecture in plain torch fp32, the packed layers as dense ``nn.Linear`` with
    their dequantized weights (the dense fp32 baseline a packed model is timed against)."""
    import torch

    model, layers = _with_packed(directory)
    for name, (p, _) in layers.items():
        lin = nn.Linear(p.in_features, p.out_features, bias=p.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(p.dequantize()))
            if p.bias is not None:
                lin.bias.copy_(torch.from_numpy(p.bias))
        _swap(model, name, lin.eval())
    return model.eval()


def _swap(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _with_packed(directory) -> tuple[nn.Module, dict]:
    """(architecture with every tensor but the packed layers loaded, {name: (layer, manifest info)})."""
    manifest = read_manifest(directory)
    entry = (manifest.get("formats") or {}).get("packed")
    if not entry:
        raise BundleError(f"{directory}: no packed model in this directory ({MANIFEST} formats: "
                          f"{', '.join(manifest.get('formats') or {}) or 'none'})")
    packed_entry = manifest["packed"]
    layers = load_layers(checked_file(directory, manifest, packed_entry["file"]))
    if not isinstance(layers, dict) or set(layers) != set(packed_entry["layers"]):
        raise BundleError(f"{packed_entry['file']}: layers differ from {MANIFEST}")
    model = build_architecture(directory, manifest)
    load_rest(model, checked_file(directory, manifest, entry["rest"]), set(layers))
    for name, p in layers.items():
        old = model.get_submodule(name)
        if (getattr(old, "in_features", None), getattr(old, "out_features", None)) != (p.in_features, p.out_features):
            raise BundleError(f"{name}: packed shape {p.shape} does not fit the architecture")
    return model, {name: (p, packed_entry["layers"][name]) for name, p in layers.items()}
