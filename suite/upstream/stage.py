"""The upstream stage: MLM pre-training of the encoder on an unlabeled corpus, pruned on the
gradual schedule of the `sparsity` group (gmp | block | nm, through the PRUNERS registry, i.e.
the PruningModifier) and distilled from the dense encoder (per-layer hidden-state MSE and, when
the model ships a trained MLM head, KD on the MLM logits at T; Prune OFA: T=2, 0.5 MLM + 0.5 KD).

A model without an MLM head (the embedded MiniLM ships a bare BertModel) gets a fresh head (tied
to the word embeddings) trained by the MLM loss, and the run says so: param/tag mlm_head=fresh;
the knowledge then flows through the hidden states only (logits KD against a random teacher
head would teach noise).

The result is a cache entry `<cache>/upstream/<upstream cell id>/` (model.safetensors,
masks.safetensors, meta.json with sha256 checksums and mask_sha256; meta written last, so a
partial entry is never used) and one MLflow run (tag stage=upstream, cell_id=<upstream cell
id>). The upstream cell id (`suite.identity`, stage "upstream") hashes only what changes the
upstream model: model weights, sparsity, upstream (minus ref), seed, the effective number of
steps and the corpus files read. Building holds a file lock, so
parallel transfer cells train one upstream once and then reuse it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import torch
from torch import nn

from suite.config import RunConfig
from suite.errors import SparqError
from suite.paths import cache_dir
from suite.upstream.config import effective_steps, upstream_config  # noqa: F401  (re-exported)

log = logging.getLogger("sparq.upstream")


# ---------------------------------------------------------------- identity

def upstream_cell_id(cfg: RunConfig) -> str:
    """The upstream stage's id: `suite.identity.config_hash(cfg, "upstream")` (rules there)."""
    from suite.identity import config_hash

    return config_hash(cfg, "upstream")


def entry_path(cfg: RunConfig, ucid: str) -> Path:
    return cache_dir(cfg.cache_dir) / "upstream" / ucid


# ---------------------------------------------------------------- cache entries

def _sha(path: Path) -> str:
    from suite.tracking import sha256_file

    return sha256_file(path)


@dataclasses.dataclass
class UpstreamEntry:
    """A stored sparse pre-trained encoder: weights, masks (keys relative to the base model,
    e.g. `encoder.layer.0.attention.self.query`) and meta (checksums, mask_sha256, metrics)."""

    path: Path
    meta: dict

    @property
    def cell_id(self) -> str:
        return self.meta["cell_id"]

    @property
    def mask_sha256(self) -> str:
        return self.meta["mask_sha256"]

    def masks(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return {k: v.bool() for k, v in load_file(str(self.path / "masks.safetensors")).items()}

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """Weights of the base model (encoder + embeddings), keys relative to it."""
        from safetensors.torch import load_file

        prefix = self.meta["base_model_prefix"] + "."
        return {k[len(prefix):]: v for k, v in load_file(str(self.path / "model.safetensors")).items()
                if k.startswith(prefix)}


def load_entry(path: Path) -> UpstreamEntry | None:
    """The entry at `path`, or None when absent, partial or corrupt (checksums)."""
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        for name, digest in meta["sha256"].items():
            if not (path / name).is_file() or _sha(path / name) != digest:
                log.warning("upstream entry %s: %s is missing or corrupt; rebuilding", path, name)
                return None
    except (ValueError, KeyError, OSError) as e:
        log.warning("upstream entry %s is unreadable (%s); rebuilding", path, e)
        return None
    return UpstreamEntry(path, meta)


def save_entry(path: Path, model: nn.Module, masks: dict[str, torch.Tensor], meta: dict) -> UpstreamEntry:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    tmp = f".tmp{os.getpid()}"
    files = {"model.safetensors": {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()},
             "masks.safetensors": {k: v.detach().cpu().to(torch.uint8).contiguous() for k, v in masks.items()}}
    meta = dict(meta, sha256={})
    for name, tensors in files.items():
        save_file(tensors, str(path / (name + tmp)))
        meta["sha256"][name] = _sha(path / (name + tmp))
        os.replace(path / (name + tmp), path / name)
    (path / ("meta.json" + tmp)).write_text(json.dumps(meta, indent=1, default=str))
    os.replace(path / ("meta.json" + tmp), path / "meta.json")  # last: the entry is valid from here on
    return UpstreamEntry(path, meta)


# ---------------------------------------------------------------- records

def _params(cfg: RunConfig, ucid: str) -> dict[str, str]:
    from suite.tracking import flatten

    u = dataclasses.asdict(cfg.upstream)
    u.pop("ref", None)
    u["steps"] = effective_steps(cfg)
    params = flatten({"model": dataclasses.asdict(cfg.model), "sparsity": dataclasses.asdict(cfg.sparsity),
                      "upstream": u})
    params.update({"model": cfg.model.label, "task": "mlm", "profile": cfg.profile.name, "seed": str(cfg.seed),
                   "stage": "upstream", "sparsity.method": cfg.sparsity.method,
                   "sparsity.target": str(cfg.sparsity.target), "quant.method": "fp32",
                   "quant.weight_bits": "32", "quant.act_bits": "32", "distill.method": "hidden",
                   "experiment": cfg.experiment_name, "upstream_cell_id": ucid})
    return params


def _corpus_paths(cfg: RunConfig) -> list[Path]:
    """The local files the corpus reads (hashed into environment.json), before anything is read."""
    from suite.upstream.corpus import corpus_files

    if cfg.upstream.corpus == "tasks":
        return [p for _, p in corpus_files(cfg.upstream, cfg.data_dir)[0]]
    return [Path(f) for f in cfg.upstream.files if Path(f).is_file()]


def ensure_upstream(cfg: RunConfig, force: bool = False) -> tuple[UpstreamEntry, str]:
    """The upstream entry `cfg` stands on, trained and recorded if needed: (entry, status) with
    status FINISHED (trained now), RECORDED (cached, recorded now in this experiment) or SKIPPED.
    The run is a `recorded_run` of kind "upstream" whose result.json is a CellRecord.

    With `upstream.ref` set, the named entry (cell id in the cache, or a directory) is used as is."""
    import mlflow

    from suite import tracking
    from suite.describe import cell_record
    from suite.recorded import recorded_run
    from suite.runtime import building, pick_device
    from suite.upstream.mlm import train_upstream

    if cfg.upstream.ref:
        return resolve_ref(cfg), "SKIPPED"
    ucfg = upstream_config(cfg)
    ucid = upstream_cell_id(ucfg)
    path = entry_path(ucfg, ucid)
    experiment = tracking.experiment_name(ucfg)
    label = f"{ucfg.model.label}-upstream-{ucfg.sparsity.method}{ucfg.sparsity.target}-s{ucfg.seed}"
    with building(path):
        entry = None if force else load_entry(path)
        with recorded_run(ucfg, kind="upstream", cell_id=ucid, experiment=experiment, params=_params(ucfg, ucid),
                          tags={"stage": "upstream", "seed": str(ucfg.seed)}, run_name=label,
                          data_files=_corpus_paths(ucfg) if entry is None else (),
                          skip_finished=entry is not None) as run:
            if run.existing is not None:
                log.info("upstream %s already recorded (run %s); reusing %s", ucid, run.run_id, path)
                return entry, "SKIPPED"
            if entry is None:
                log.info("training upstream %s -> %s", ucid, path)
                torch.set_num_threads(ucfg.threads or os.cpu_count() or 1)
                model, masks, metrics, tags, corpus = train_upstream(ucfg, pick_device(ucfg.device))
                meta = {"cell_id": ucid, "mask_sha256": tags["mask_sha256"], "metrics": metrics, "tags": tags,
                        "base_model_prefix": model.base_model_prefix, "corpus_files": corpus.files,
                        "corpus_skipped": corpus.skipped, "model": dataclasses.asdict(ucfg.model),
                        "sparsity": dataclasses.asdict(ucfg.sparsity), "seed": ucfg.seed,
                        "config": tracking.config_dict(ucfg)}
                entry = save_entry(path, model, masks, meta)
                status, reused = "FINISHED", False
            else:
                status, reused = "RECORDED", True
            tags = {**entry.meta["tags"], "upstream_reused": str(reused).lower(),
                    "corpus_files": json.dumps(entry.meta["corpus_files"]), "upstream_path": str(path)}
            mlflow.log_dict(dict(entry.meta), "upstream_meta.json")
            metrics = dict(entry.meta["metrics"])
            run.finish(cell_record(ucfg, kind="upstream", cell_id=ucid, run_id=run.run_id, experiment=experiment,
                                   metrics=metrics, tags=tags), metrics, tags)
    return entry, status


def resolve_ref(cfg: RunConfig) -> UpstreamEntry:
    ref = cfg.upstream.ref
    path = Path(ref).expanduser()
    if not path.is_dir():
        path = cache_dir(cfg.cache_dir) / "upstream" / ref
    entry = load_entry(path)
    if entry is None:
        raise SparqError(f"upstream.ref: no valid upstream entry at '{ref}' (a cell id under "
                         f"{cache_dir(cfg.cache_dir) / 'upstream'} or a directory)")
    return entry


def find_entry(cfg: RunConfig) -> UpstreamEntry:
    """The (already built) entry of a transfer cell; see ensure_upstream for building it."""
    if cfg.upstream.ref:
        return resolve_ref(cfg)
    ucfg = upstream_config(cfg)
    entry = load_entry(entry_path(ucfg, upstream_cell_id(ucfg)))
    if entry is None:
        raise SparqError("stage=transfer: the upstream model is not built; run_cell builds it "
                         "(suite.upstream.stage.ensure_upstream)")
    return entry


def run_upstream_cell(cfg: RunConfig):
    """`python -m suite.run stage=upstream sparsity=gmp sparsity.target=0.9`: one upstream cell."""
    from suite.runtime import CellResult

    entry, status = ensure_upstream(cfg, force=cfg.force)
    return CellResult(entry.cell_id, "SKIPPED" if status == "SKIPPED" else "FINISHED",
                      metrics=dict(entry.meta["metrics"]))
