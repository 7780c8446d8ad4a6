"""The dense fine-tuned teacher of a model x task x seed x train config: trained once, cached.

Stored as safetensors under a content hash of its config, with a sha256 checksum beside it; an
entry whose checksum does not match (partial write, corruption) is rebuilt, never used. Writes
are atomic (temporary file + rename, checksum last), and building an entry holds an exclusive
lock on `teachers/<key>.lock` (filelock), so cells running in parallel train a teacher once and
the others wait and reuse it (the kernel drops the lock of a killed process). In a torchrun cell
(suite/distributed.py) rank 0 checks the entry under the lock and the ranks train a missing teacher
together; the other ranks read an existing one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import torch

from suite.config import RunConfig
from suite.distributed import SINGLE, World
from suite.paths import cache_dir

log = logging.getLogger("sparq.teacher")


def teacher_config(cfg: RunConfig) -> RunConfig:
    """The dense, fp32, undistilled cell with the same model, task, train and profile, at budget 1x
    (the budget axis varies the student's steps; its teacher and fine-tuned init stay the same)."""
    from suite.distill.none import NoDistillConfig
    from suite.prune.dense import DenseConfig
    from suite.quant.fp32 import Fp32Config

    init = "checkpoint" if cfg.init == "checkpoint" else "pretrained"  # a checkpoint is its own teacher
    return dataclasses.replace(cfg, sparsity=DenseConfig(), quant=Fp32Config(),
                               distill=NoDistillConfig(), init=init,
                               train=dataclasses.replace(cfg.train, lr_schedule="linear"),
                               profile=dataclasses.replace(cfg.profile, budget=1.0),  # one for all budgets
                               model=dataclasses.replace(cfg.model, shrink_keep_every=1, shrink_intermediate=None))


def is_teacher_cell(cfg: RunConfig) -> bool:
    """The dense, fp32, undistilled fine-tune cell *is* its own teacher: it is built once (by this
    cell or by the first cell that distils from it) and shared, never trained twice. A cell with
    test hooks (`debug.*`) trains itself: the hooks run in its own loop."""
    from suite.config import DebugConfig

    return cfg.stage == "finetune" and cfg.debug == DebugConfig() and teacher_config(cfg) == cfg


def teacher_key(cfg: RunConfig) -> str:
    """The teacher's id: `suite.identity.config_hash` of its config, stage "teacher"."""
    from suite.identity import config_hash

    return config_hash(teacher_config(cfg), "teacher")


def teacher_path(cfg: RunConfig) -> Path:
    return cache_dir(cfg.cache_dir) / "teachers" / teacher_key(cfg)


def _checksum(path: Path) -> str:
    from suite.tracking import sha256_file

    return sha256_file(path)


def load_cached(cfg: RunConfig, model: torch.nn.Module) -> bool:
    """Load the cached teacher weights into `model`; False when absent or corrupt."""
    from safetensors.torch import load_file

    entry = teacher_path(cfg)
    weights, checksum = entry / "model.safetensors", entry / "model.sha256"
    if not (weights.is_file() and checksum.is_file()):
        return False
    if _checksum(weights) != checksum.read_text(errors="replace").strip():
        log.warning("teacher cache entry %s is corrupt (checksum mismatch); rebuilding", entry)
        return False
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except Exception as e:  # noqa: BLE001 - an entry we cannot load is rebuilt, never half-used
        log.warning("teacher cache entry %s does not load (%s); rebuilding", entry, e)
        return False
    return True


def train_stats(cfg: RunConfig) -> dict[str, float]:
    """The train_* metrics of the run that trained the cached teacher ({} for an entry without them)."""
    path = teacher_path(teacher_config(cfg)) / "train_stats.json"
    try:
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def save(cfg: RunConfig, model: torch.nn.Module, stats: dict[str, float] | None = None) -> Path:
    """Atomic write: weights then checksum, each via a temporary file and rename; the training's
    train_* metrics beside them (`train_stats`), so a dense cell that reuses the entry reports them."""
    from safetensors.torch import save_file

    entry = teacher_path(cfg)
    entry.mkdir(parents=True, exist_ok=True)
    tmp = entry / f"model.safetensors.tmp{os.getpid()}"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    digest = _checksum(tmp)
    os.replace(tmp, entry / "model.safetensors")
    (entry / f"model.sha256.tmp{os.getpid()}").write_text(digest)
    os.replace(entry / f"model.sha256.tmp{os.getpid()}", entry / "model.sha256")
    meta = {"key": teacher_key(cfg), "model": dataclasses.asdict(cfg.model), "task": cfg.task.name,
            "train": dataclasses.asdict(cfg.train), "profile": dataclasses.asdict(cfg.profile), "seed": cfg.seed}
    (entry / "meta.json").write_text(json.dumps(meta, indent=1, default=str))  # for humans only
    if stats is not None:
        (entry / f"train_stats.json.tmp{os.getpid()}").write_text(json.dumps(stats))
        os.replace(entry / f"train_stats.json.tmp{os.getpid()}", entry / "train_stats.json")
    return entry


def get_teacher(cfg: RunConfig, features, collate, device: torch.device,
                world: World = SINGLE) -> tuple[torch.nn.Module, bool]:
    """(teacher in eval mode, reused?) for the cell's model x task x seed x train config; `world`:
    the processes of a torchrun cell, which call this together."""
    from suite import distributed
    from suite.errors import SparqError
    from suite.models import load_model
    from suite.runtime import seed_everything
    from suite.train import fine_tune, train_loader

    t = teacher_config(cfg)
    seed_everything(t.seed)
    if t.init == "checkpoint":  # the user's fine-tuned model, as it is: never trained, never cached
        model, reused = load_model(t.model, t.task, t.train.dropout, keep_head=True), True
        log.info("teacher: the checkpoint %s as it is", t.model.label)
        return _frozen(model, device), reused
    model = load_model(t.model, t.task, t.train.dropout)
    with distributed.main_lock(teacher_path(t), world):
        reused = distributed.broadcast(load_cached(t, model) if world.main else None, world)
        if reused and not world.main and not load_cached(t, model):  # rank 0 has just verified it
            raise SparqError(f"teacher cache entry {teacher_path(t)} changed while it was read; run again")
        if not reused:
            log.info("training dense teacher %s", teacher_key(t))
            seed_everything(t.seed)  # a fresh model: a failed load may have touched the first one
            model = load_model(t.model, t.task, t.train.dropout)
            loader = train_loader(features, collate, t.train.batch_size, t.seed,
                                  group_by_length=t.train.group_by_length)
            stats = fine_tune(model, loader, t.train, t.profile, (), device, t.progress,
                              desc=f"teacher {t.task.name}", world=world)
            if world.main:
                save(t, model, stats)
        else:
            log.info("reusing cached dense teacher %s", teacher_key(t))
    return _frozen(model, device), reused


def _frozen(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def teacher_provider(cfg: RunConfig, features, collate, device: torch.device, world: World = SINGLE):
    """A callable that builds or loads the teacher on first use (only distilling cells pay).

    It runs under a forked RNG with its own data loader, so the student's data order and
    dropout draws are the same whether the teacher was trained now or read from the cache.
    In a torchrun cell every rank calls it at the same point (`provide.world` says so)."""
    cached: dict = {}

    def provide() -> torch.nn.Module:
        if "model" not in cached:
            import random

            import numpy as np

            py_state, np_state = random.getstate(), np.random.get_state()  # fork_rng covers torch only
            try:
                with torch.random.fork_rng():
                    cached["model"], cached["reused"] = get_teacher(cfg, features, collate, device, world)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
        return cached["model"]

    provide.cache = cached  # type: ignore[attr-defined]
    provide.world = world  # type: ignore[attr-defined]
    return provide


def load_teacher_weights(model: torch.nn.Module, provider) -> None:
    """`init=finetuned`: copy the dense teacher's weights (built or read from the cache by the
    provider) into `model`, exactly (strict: same architecture)."""
    model.load_state_dict(provider().state_dict(), strict=True)
