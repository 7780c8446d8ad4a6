"""The compressed student, out: every compressed cell writes it as MLflow run artifacts (`student/`).

One directory (a `kernels.bundle`: a Hugging Face model directory plus `sparq.json`) holds:

    model.safetensors   the model as the cell evaluated it (suite/export/student.py): masks applied,
                        int8 codes + scales of quantized weights, input quantizer scales
    encoder.sparqpk     the packed int8 layers (kernels/io.py) the cell's packed eval and latency
                        ran; `kernels.load_model(DIR)` rebuilds the model on the sparse kernels
    model.onnx          QDQ int8 (fp32 for an unquantized cell) where expressible (suite/export/onnx.py);
                        else `sparq.json` says why not
    check.safetensors   a few eval inputs and the cell's own outputs on them (torch and packed), so
                        any reload can be checked: `verify(DIR, format)`
    config.json, tokenizer files, sparq.json (formats, sha256 of every file)

`python -m suite.export RUN_ID --format safetensors|packed|onnx --out DIR` writes one of them from
the store and checks it against the cell's outputs.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("sparq")

FORMATS = ("safetensors", "packed", "onnx")
ARTIFACT_DIR = "student"
CHECK_FILE = "check.safetensors"
REST_FILE = "rest.safetensors"
MODEL_INPUTS_SKIP = ("labels", "start_positions", "end_positions", "example_idx")
HEADS = {"classification": "sequence_classification", "regression": "sequence_classification",
         "qa": "question_answering"}


def wanted(cfg) -> list[str]:
    """Formats this cell exports: `export.formats` for a compressed cell, none for a dense one."""
    from suite.measure import compressed

    formats = list(cfg.export.formats)
    return formats if compressed(cfg) else []


def check_batch(features, collate, n: int) -> dict[str, torch.Tensor]:
    """The first `n` eval examples as one padded batch of model inputs."""
    batch = collate([features[i] for i in range(min(n, len(features)))])
    return {k: v for k, v in batch.items() if k not in MODEL_INPUTS_SKIP}


@torch.no_grad()
def outputs_of(model: nn.Module, batch: dict[str, torch.Tensor], keys) -> dict[str, torch.Tensor]:
    out = model(**batch)
    return {k: out[k].detach().float().contiguous() for k in keys}


def write_bundle(directory: Path, cfg, model: nn.Module, output_keys, features, collate, tokenizer,
                 formats: list[str], cell: dict | None = None) -> dict:
    """Write the student's formats into `directory`; returns the manifest (also `sparq.json`)."""
    from safetensors.torch import save_file

    from kernels.bundle import BUNDLE_VERSION, MANIFEST, file_sha256, write_packed
    from suite.export import onnx as onnx_export
    from suite.export import student
    from suite.measure import pack_model

    directory.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()
    keys = list(output_keys)
    batch = check_batch(features, collate, cfg.export.check_examples)
    check = {f"input.{k}": v for k, v in batch.items()}
    check.update({f"torch.{k}": v for k, v in outputs_of(model, batch, keys).items()})
    manifest: dict = {"sparq_bundle": BUNDLE_VERSION, "head": HEADS[cfg.task.kind],
                      "attn_implementation": getattr(model.config, "_attn_implementation", None) or "eager",
                      "inputs": sorted(batch), "outputs": keys, "formats": {}, "skipped": {},
                      "cell": {**(cell or {}), "task": cfg.task.name, "task_kind": cfg.task.kind,
                               "labels": list(cfg.task.labels), "sparsity": cfg.sparsity.label(),
                               "quant": cfg.quant.label()},
                      "check": {"file": CHECK_FILE, "examples": len(next(iter(batch.values())))}}
    model.config.save_pretrained(directory)
    common = ["config.json"]
    if tokenizer is not None:
        common += sorted({Path(p).name for p in tokenizer.save_pretrained(str(directory)) if Path(p).is_file()})
    if "safetensors" in formats:
        manifest["formats"]["safetensors"] = student.write(model, directory)
    if "packed" in formats:
        packed, info = pack_model(model, cfg)
        check.update({f"packed.{k}": v for k, v in outputs_of(packed, batch, keys).items()})
        manifest["packed"] = {**write_packed(packed, directory), "format": info["format"], "bits": info["bits"],
                              "requantized": info["requantized"]}
        rest = student.FILE if "safetensors" in formats else write_rest(model, directory, set(info["formats"]))
        manifest["formats"]["packed"] = {"file": manifest["packed"]["file"], "rest": rest}
    if "onnx" in formats:
        why = onnx_export.not_expressible(model)
        if why is None:
            manifest["formats"]["onnx"] = onnx_export.write(model, directory, batch, keys)
        else:
            manifest["skipped"]["onnx"] = why
    save_file(check, str(directory / CHECK_FILE))
    files = set(common) | {CHECK_FILE}
    for entry in manifest["formats"].values():
        files |= {entry[k] for k in ("file", "rest") if k in entry}
    manifest["common"] = common
    manifest["sha256"] = {f: file_sha256(directory / f) for f in sorted(files)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def write_rest(model: nn.Module, directory: Path, packed: set[str]) -> str:
    """Every tensor outside the packed layers (fp32), for a packed bundle without model.safetensors."""
    from safetensors.torch import save_file

    from suite.measure import plain_fp32

    state = plain_fp32(model).state_dict()
    inside = lambda k: any(k.startswith(p + ".") for p in packed)  # noqa: E731
    save_file({k: v.contiguous() for k, v in state.items() if not inside(k)}, str(directory / REST_FILE))
    return REST_FILE


# ---------------------------------------------------------------- reload and check

def load(directory: str | Path, fmt: str):
    """The exported model of one format: torch (safetensors), packed kernels (packed, unfused so
    it is the model the cell evaluated), or an ONNX Runtime session (onnx)."""
    if fmt == "safetensors":
        from suite.export.student import load as load_student

        return load_student(directory)
    if fmt == "packed":
        from kernels.bundle import load_model

        return load_model(directory, fuse=False)
    if fmt == "onnx":
        from kernels.bundle import checked_file, read_manifest
        from suite.export import onnx as onnx_export

        manifest = read_manifest(directory)
        entry = (manifest.get("formats") or {}).get("onnx")
        if not entry:
            from kernels.bundle import BundleError

            raise BundleError(f"{directory}: no ONNX model ({(manifest.get('skipped') or {}).get('onnx', 'not exported')})")
        return onnx_export.session(checked_file(directory, manifest, entry["file"]))
    raise ValueError(f"format {fmt!r}; allowed: {', '.join(FORMATS)}")


def verify(directory: str | Path, fmt: str, model=None) -> dict[str, float]:
    """Run the exported `fmt` model on the bundle's check inputs and compare with the cell's own
    outputs there (torch for safetensors and onnx, the packed model for packed): max |diff| over
    outputs, the largest |output|, and the share of equal argmax predictions."""
    from safetensors.torch import load_file

    from kernels.bundle import checked_file, read_manifest

    manifest = read_manifest(directory)
    check = load_file(str(checked_file(directory, manifest, manifest["check"]["file"])))
    batch = {k.removeprefix("input."): v for k, v in check.items() if k.startswith("input.")}
    keys = manifest["outputs"]
    model = model if model is not None else load(directory, fmt)
    if fmt == "onnx":
        from suite.export import onnx as onnx_export

        got = dict(zip(manifest["formats"]["onnx"]["outputs"],
                       (torch.from_numpy(a) for a in onnx_export.run(model, batch)), strict=True))
    else:
        got = outputs_of(model, batch, keys)
    ref = {k: check[f"{'packed' if fmt == 'packed' else 'torch'}.{k}"] for k in keys}
    diff = max(float((got[k] - ref[k]).abs().max()) for k in keys)
    agree = min(float((got[k].argmax(-1) == ref[k].argmax(-1)).float().mean()) for k in keys)
    return {"max_abs_diff": diff, "max_abs_output": max(float(ref[k].abs().max()) for k in keys),
            "argmax_agreement": agree}


# ---------------------------------------------------------------- the cell's stage

def export_cell(cfg, model: nn.Module, task_kind, features, collate, tokenizer, directory: Path,
                cell: dict | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """Write the student bundle of a compressed cell into `directory` and check its ONNX form;
    returns (metrics, tags) for the record. A failure is recorded (tag `export_error`), never raised:
    the trained cell is still recorded."""
    formats = wanted(cfg)
    if not formats:
        return {}, {}
    try:
        manifest = write_bundle(directory, cfg, model, task_kind.output_keys, features, collate, tokenizer,
                                formats, cell)
    except Exception as e:  # noqa: BLE001 - reported in the record
        log.exception("export failed")
        return {}, {"export_error": f"{type(e).__name__}: {e}"[:500]}
    metrics = {f"export_bytes_{fmt}": float(sum((directory / entry[k]).stat().st_size
                                                for k in ("file",) if k in entry))
               for fmt, entry in manifest["formats"].items()}
    tags = {"export_formats": ",".join(manifest["formats"])}
    tags.update({f"export_skipped_{fmt}": why[:300] for fmt, why in manifest["skipped"].items()})
    if "onnx" in manifest["formats"]:
        tags["export_onnx_quant"] = manifest["formats"]["onnx"]["quant"]
        try:
            metrics["export_onnx_max_abs_diff"] = verify(directory, "onnx")["max_abs_diff"]
        except Exception as e:  # noqa: BLE001
            tags["export_error"] = f"onnx check: {type(e).__name__}: {e}"[:500]
    return metrics, tags


def log_bundle(directory: Path) -> None:
    """The bundle as the active MLflow run's `student/` artifacts (when one was written)."""
    import mlflow

    if any(directory.iterdir()):
        mlflow.log_artifacts(str(directory), ARTIFACT_DIR)
