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
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from suite.config import ProfileConfig, RunConfig, TrainConfig
from suite.distill import losses as L
from suite.errors import SparqError
from suite.lifecycle import Modifier
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


# ---------------------------------------------------------------- model and loss

def load_mlm_model(cfg: RunConfig) -> tuple[nn.Module, bool]:
    """(AutoModelForMaskedLM with the pretrained encoder, head_pretrained?)."""
    from transformers import AutoModelForMaskedLM

    from suite.models import resolve_model_dir

    where, local = resolve_model_dir(cfg.model)
    model, info = AutoModelForMaskedLM.from_pretrained(where, local_files_only=local, revision=cfg.model.revision,
                                                        trust_remote_code=False, output_loading_info=True)
    prefix = model.base_model_prefix + "."
    head_missing = [k for k in info["missing_keys"] if not k.startswith(prefix)]
    encoder_missing = [k for k in info["missing_keys"] if k.startswith(prefix) and "position_ids" not in k]
    if encoder_missing:
        raise SparqError(f"model: the MLM model misses encoder weights {encoder_missing[:3]}")
    model.tie_weights()
    return model, not head_missing


class MLMStudent(nn.Module):
    """Wraps an MLM model so the generic fine-tuning loop can train it: the loss is the MLM
    cross-entropy at the masked positions; the vocabulary projection runs only there (BERT's
    `cls` head), which saves most of the head's compute on a CPU."""

    def __init__(self, mlm: nn.Module):
        super().__init__()
        self.mlm = mlm

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                output_hidden_states: bool = False):
        base = self.mlm.base_model
        kwargs = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = base(input_ids=input_ids, output_hidden_states=output_hidden_states, **kwargs)
        selected = labels != -100
        if hasattr(self.mlm, "cls"):
            logits = self.mlm.cls(out.last_hidden_state[selected])
        else:
            logits = self.mlm(input_ids=input_ids, **kwargs).logits[selected]
        loss = nn.functional.cross_entropy(logits.float(), labels[selected]) if selected.any() \
            else logits.sum() * 0.0
        return SimpleNamespace(loss=loss, logits=logits, hidden_states=out.hidden_states, selected=selected)


class UpstreamDistillModifier(Modifier):
    """loss = alpha_mlm * MLM + alpha_kd * KD(logits at masked positions, T) [trained head only]
    + alpha_hidden * hidden-state MSE against the frozen dense encoder."""

    def __init__(self, teacher: MLMStudent, cfg, use_logits: bool):
        self.teacher, self.cfg, self.use_logits = teacher, cfg, use_logits
        self.history: dict[str, list[float]] = {"mlm": [], "hidden": [], "kd": []}

    def forward_kwargs(self) -> dict:
        return {"output_hidden_states": True} if self.cfg.alpha_hidden > 0 else {}

    def loss(self, model, batch, outputs, task_loss, state):
        c = self.cfg
        total = c.alpha_mlm * task_loss
        self.history["mlm"].append(float(task_loss.detach()))
        need_hidden = c.alpha_hidden > 0
        if need_hidden or self.use_logits:
            with torch.no_grad():
                t = self.teacher(**batch, output_hidden_states=need_hidden)
        if self.use_logits and c.alpha_kd > 0 and outputs.logits.shape[0]:
            kd = L.kd_logits(outputs.logits, t.logits, c.temperature)
            total = total + c.alpha_kd * kd
            self.history["kd"].append(float(kd.detach()))
        if need_hidden:
            h = L.hidden_mse(outputs.hidden_states, t.hidden_states, batch.get("attention_mask"))
            total = total + c.alpha_hidden * h
            self.history["hidden"].append(float(h.detach()))
        state.logs["upstream_mlm_loss"] = float(task_loss.detach())
        return total

    def metrics(self, model) -> dict[str, float]:
        out = {}
        for key, values in self.history.items():
            if values:
                out[f"upstream_{key}_loss"] = sum(values[-50:]) / len(values[-50:])
                out[f"upstream_{key}_loss_first"] = sum(values[:20]) / len(values[:20])
        return out


def tokenize_corpus(lines: list[str], tokenizer, max_length: int, pack: bool):
    """A Dataset of MLM examples: one per line, or lines packed into max_length chunks."""
    from datasets import Dataset

    enc = tokenizer(lines, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    if not pack:
        return Dataset.from_dict({"input_ids": enc["input_ids"], "special_tokens_mask": enc["special_tokens_mask"]})
    ids = [t for seq in enc["input_ids"] for t in seq]
    special = [t for seq in enc["special_tokens_mask"] for t in seq]
    n = max(1, len(ids) // max_length) * max_length if len(ids) >= max_length else len(ids)
    return Dataset.from_dict({"input_ids": [ids[i:i + max_length] for i in range(0, n, max_length)],
                              "special_tokens_mask": [special[i:i + max_length] for i in range(0, n, max_length)]})


def train_upstream(cfg: RunConfig, device: torch.device) -> tuple[nn.Module, dict, dict, dict, object]:
    """Train the sparse upstream model: (mlm model, masks (base-relative), metrics, tags, corpus)."""
    import copy

    from transformers import DataCollatorForLanguageModeling

    from suite import compression
    from suite.lifecycle import RunContext
    from suite.models import load_tokenizer
    from suite.prune import PRUNERS
    from suite.prune import masks as M
    from suite.runtime import seed_everything
    from suite.train import fine_tune, train_loader
    from suite.upstream.corpus import load_corpus

    u = cfg.upstream
    start = time.perf_counter()
    seed_everything(cfg.seed)
    tokenizer = load_tokenizer(cfg.model)
    corpus = load_corpus(u, cfg.data_dir, cfg.seed)
    features = tokenize_corpus(corpus.lines, tokenizer, u.max_length, u.pack)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=u.mlm_probability, seed=cfg.seed)
    loader = train_loader(features, collator, u.batch_size, cfg.seed)
    seed_everything(cfg.seed)
    mlm, head_pretrained = load_mlm_model(cfg)
    teacher = MLMStudent(copy.deepcopy(mlm)).to(device).eval()  # the dense model, frozen
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = MLMStudent(mlm)
    pruners = PRUNERS.get(cfg.sparsity.method)(cfg.sparsity, RunContext(cfg=cfg, task=None, device=device))
    distill = UpstreamDistillModifier(teacher, u, use_logits=head_pretrained)
    steps = effective_steps(cfg)
    train = TrainConfig(epochs=1.0, lr=u.lr, batch_size=u.batch_size, weight_decay=u.weight_decay,
                        warmup_ratio=u.warmup_ratio)
    profile = ProfileConfig(name="upstream", epochs=float(math.ceil(steps / max(1, len(loader)))), max_steps=steps)
    stats = fine_tune(student, loader, train, profile, [*pruners, distill], device, cfg.progress,
                      desc=f"upstream mlm {cfg.sparsity.method} {getattr(cfg.sparsity, 'target', '')}")
    base_prefix = f"mlm.{mlm.base_model_prefix}."
    masks = {}
    for m in pruners:
        masks.update({k[len(base_prefix):]: v.cpu() for k, v in m.masks.items()})
    if not masks:
        raise SparqError("stage=upstream: the pruning method produced no masks")
    linears = compression.prunable_linears(mlm.base_model)
    metrics = {**{k: float(v) for k, v in stats.items()}, **distill.metrics(student)}
    metrics.update({
        "sparsity_measured": compression.measured_sparsity(linears), "mask_sparsity": M.mask_sparsity(masks),
        "mlm_examples": float(len(features)), "mlm_tokens": float(sum(len(x) for x in features["input_ids"])),
        **corpus.stats(), "wall_seconds": time.perf_counter() - start,
    })
    tags = {"mlm_head": "pretrained" if head_pretrained else "fresh",
            "kd_logits": str(head_pretrained and u.alpha_kd > 0).lower(), "mask_sha256": M.mask_sha256(masks),
            "corpus_sha256": corpus.sha256(), "corpus_source": corpus.source}
    return mlm, masks, metrics, tags, corpus


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
                   "sparsity.target": str(getattr(cfg.sparsity, "target", 0.0)), "quant.method": "fp32",
                   "quant.weight_bits": "32", "quant.act_bits": "32", "distill.method": "hidden",
                   "experiment": cfg.experiment_name, "upstream_cell_id": ucid})
    return params


def ensure_upstream(cfg: RunConfig, force: bool = False) -> tuple[UpstreamEntry, str]:
    """The upstream entry `cfg` stands on, trained and recorded if needed: (entry, status) with
    status FINISHED (trained now), RECORDED (cached, recorded now in this experiment) or SKIPPED.

    With `upstream.ref` set, the named entry (cell id in the cache, or a directory) is used as is."""
    from suite import tracking
    from suite.runtime import building, pick_device

    if cfg.upstream.ref:
        return resolve_ref(cfg), "SKIPPED"
    ucfg = upstream_config(cfg)
    ucid = upstream_cell_id(ucfg)
    path = entry_path(ucfg, ucid)
    experiment = tracking.experiment_name(ucfg)
    mlflow = tracking.setup_mlflow(experiment)
    with building(path):
        entry = None if force else load_entry(path)
        recorded = tracking.finished_run(experiment, ucid)
        if entry is not None and recorded is not None:
            log.info("upstream %s already recorded (run %s); reusing %s", ucid, recorded.info.run_id, path)
            return entry, "SKIPPED"
        tracking.close_orphans(experiment, ucid)
        label = f"{ucfg.model.label}-upstream-{ucfg.sparsity.method}{getattr(ucfg.sparsity, 'target', '')}-s{ucfg.seed}"
        with mlflow.start_run(run_name=label):
            mlflow.set_tags({"cell_id": ucid, "stage": "upstream", "suite.version": tracking.__version__,
                             "git_sha": tracking.git_sha(), "seed": str(ucfg.seed), **tracking.run_owner()})
            tracking.log_params(mlflow, _params(ucfg, ucid))
            try:
                if entry is None:
                    log.info("training upstream %s -> %s", ucid, path)
                    torch.set_num_threads(ucfg.threads or os.cpu_count() or 1)
                    model, masks, metrics, tags, corpus = train_upstream(ucfg, pick_device(ucfg.device))
                    data_root = Path(ucfg.data_dir) if ucfg.data_dir else None
                    corpus_paths = [data_root / f for f in corpus.files if data_root and (data_root / f).is_file()]
                    meta = {"cell_id": ucid, "mask_sha256": tags["mask_sha256"], "metrics": metrics, "tags": tags,
                            "base_model_prefix": model.base_model_prefix, "corpus_files": corpus.files,
                            "corpus_skipped": corpus.skipped, "model": dataclasses.asdict(ucfg.model),
                            "sparsity": dataclasses.asdict(ucfg.sparsity), "seed": ucfg.seed,
                            "config": tracking.config_dict(ucfg)}
                    entry = save_entry(path, model, masks, meta)
                    mlflow.log_dict(tracking.environment(corpus_paths), "environment.json")
                    status, reused = "FINISHED", False
                else:
                    status, reused = "RECORDED", True
                mlflow.set_tags({**entry.meta["tags"], "upstream_reused": str(reused).lower(),
                                 "corpus_files": json.dumps(entry.meta["corpus_files"]),
                                 "upstream_path": str(path)})
                mlflow.log_metrics(entry.meta["metrics"])
                mlflow.log_dict({k: v for k, v in entry.meta.items()}, "upstream_meta.json")
            except Exception as e:
                mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:5000])
                mlflow.end_run(status="FAILED")
                raise
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
