"""Teacher outputs computed once per teacher x train subset and reused by every KD cell.

What is cached: the dense teacher's logits (classification and regression), one row per train
example, fp32, as safetensors under `<cache>/teacher_outputs/<teacher key>-<features digest>`
with a sha256 beside it (a corrupt entry is recomputed, never used). A few KB per 1000 examples.
Not cached: hidden states and attention scores (MiniLM-L6 on 8000 SST-2 examples would be ~0.5 GB
of hidden states in fp16, GBs for MNLI); `distill=hidden|knowledge_aware` run the teacher live.
The teacher runs in eval mode, as it does live, so cached and live logits agree up to float
rounding (batches differ in padding only).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader

log = logging.getLogger("sparq.teacher_cache")

INDEX_KEY = "example_idx"


def features_digest(features) -> str:
    """sha256 over the token ids of every train example, in order (the train subset's identity)."""
    h = hashlib.sha256()
    column = features["input_ids"] if hasattr(features, "column_names") else [f["input_ids"] for f in features]
    for ids in column:
        h.update(len(ids).to_bytes(4, "little"))
        h.update(torch.as_tensor(ids, dtype=torch.int64).numpy().tobytes())
    return h.hexdigest()[:20]


def entry_path(cfg, digest: str) -> Path:
    from suite.paths import cache_dir
    from suite.teacher import teacher_key

    return cache_dir(cfg.cache_dir) / "teacher_outputs" / f"{teacher_key(cfg)}-{digest}"


def _sha(path: Path) -> str:
    from suite.tracking import sha256_file

    return sha256_file(path)


def _load(entry: Path) -> torch.Tensor | None:
    from safetensors.torch import load_file

    weights, checksum = entry / "logits.safetensors", entry / "logits.sha256"
    if not (weights.is_file() and checksum.is_file()):
        return None
    if _sha(weights) != checksum.read_text(errors="replace").strip():
        log.warning("teacher outputs %s are corrupt (checksum mismatch); recomputing", entry)
        return None
    return load_file(str(weights))["logits"]


def _save(entry: Path, logits: torch.Tensor) -> None:
    from safetensors.torch import save_file

    entry.mkdir(parents=True, exist_ok=True)
    tmp = entry / f"logits.safetensors.tmp{os.getpid()}"
    save_file({"logits": logits.contiguous()}, str(tmp))
    digest = _sha(tmp)
    os.replace(tmp, entry / "logits.safetensors")
    (entry / f"logits.sha256.tmp{os.getpid()}").write_text(digest)
    os.replace(entry / f"logits.sha256.tmp{os.getpid()}", entry / "logits.sha256")


@torch.no_grad()
def compute_logits(teacher: torch.nn.Module, loader: DataLoader, n: int, device: torch.device) -> torch.Tensor:
    """Logits of every example, placed at its `example_idx` (the loader must carry it)."""
    out: torch.Tensor | None = None
    teacher.eval()
    for batch in loader:
        index = batch.pop(INDEX_KEY)
        inputs = {k: v.to(device) for k, v in batch.items() if k not in ("labels",)}
        logits = teacher(**inputs).logits.float().cpu()
        if out is None:
            out = torch.zeros((n, *logits.shape[1:]), dtype=torch.float32)
        out[index] = logits
    return out


def sorted_loader(train_loader: DataLoader, batch_size: int) -> DataLoader:
    """The train loader's indexed examples, in batches sorted by length (least padding)."""
    from suite.train import feature_lengths

    dataset = train_loader.dataset
    lengths = feature_lengths(dataset.features)
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    return DataLoader(dataset, batch_sampler=batches, collate_fn=train_loader.collate_fn)


def teacher_logits(cfg, provider, train_loader: DataLoader, device: torch.device,
                   batch_size: int = 128) -> tuple[torch.Tensor, bool]:
    """(logits [n_examples, ...] of the dense teacher on the cell's train features, reused?).
    Computed under an exclusive file lock, so parallel cells compute them once. In a torchrun cell
    (`provider.world`) rank 0 checks and computes them while the other ranks wait, then read them."""
    from suite import distributed

    world = getattr(provider, "world", distributed.SINGLE)
    features = train_loader.dataset.features
    entry = entry_path(cfg, features_digest(features))
    entry.parent.mkdir(parents=True, exist_ok=True)
    logits = None
    with distributed.main_lock(entry, world):
        cached = _load(entry) if world.main else None
        if distributed.broadcast(cached is not None and cached.shape[0] == len(features), world):
            log.info("reusing cached teacher logits %s", entry.name)
            if hasattr(provider, "cache"):  # the run records teacher_reused: its outputs came from the cache
                provider.cache.setdefault("reused", True)
            return (cached if world.main else _load(entry)), True
        teacher = provider()  # every rank: a teacher that is not cached is trained by all of them
        if world.main:
            log.info("computing teacher logits %s (%d examples)", entry.name, len(features))
            with torch.random.fork_rng():  # iterating a DataLoader draws a seed: keep the student's RNG as is
                logits = compute_logits(teacher, sorted_loader(train_loader, batch_size), len(features), device)
            _save(entry, logits)
    distributed.barrier(world)  # rank 0 has written them
    return (logits if world.main else _load(entry)), False
