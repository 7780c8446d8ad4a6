"""One cell on many processes: data-parallel training under torchrun (DDP; gloo on CPU, nccl on CUDA).

    torchrun --standalone --nproc_per_node=N -m suite.run [KEY=VALUE...]

How a step is shared. Every process iterates the same seeded loader, so each optimizer step sees
the global batch of `train.batch_size` examples that one process would see. Each rank takes its
contiguous slice of that batch and cuts it into `accumulation` micro-batches (per-process batch x
processes x accumulation = train.batch_size; `train.micro_batch_size` sets the micro-batch). A
micro-batch's loss is scaled by its share of the global batch (times the process count, since DDP
averages gradients), so the step's gradient is that of the global batch's mean loss however the
examples are split; the logged loss is the same mean, summed over ranks. A rank whose slice is
empty (a short last batch) runs one example at weight 0 to stay in step with the others.

Who does what. Rank 0 alone opens the MLflow run, evaluates, measures and writes the record; the
other ranks train beside it and stop after training. A cache entry (dense teacher, teacher logits)
is checked and built under its file lock by rank 0; the others wait for its answer and read the
entry (the teacher, when it must be trained, is trained by all ranks together). Rank r > 0 draws
dropout from seed + r; rank 0 draws what one process would.

Everything here is a no-op for one process (`SINGLE`), so the loop has one code path. The CUDA
path (nccl, one GPU per local rank, bf16 autocast) is written for GPUs but tested on CPU only.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

TIMEOUT_ENV = "SPARQ_DIST_TIMEOUT_S"  # how long a rank waits for the others (rank 0 building a teacher)
DEFAULT_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one cell (torchrun's environment)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


SINGLE = World()


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The World torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE); SINGLE outside it."""
    env = os.environ if env is None else env
    size = int(env.get("WORLD_SIZE") or 1)
    if size <= 1:
        return SINGLE
    return World(rank=int(env.get("RANK") or 0), size=size, local_rank=int(env.get("LOCAL_RANK") or 0),
                 local_size=int(env.get("LOCAL_WORLD_SIZE") or size))


def current() -> World:
    """The World of this process once it joined its process group (`start`), else SINGLE: code
    that is not started by torchrun (tests, a grid's cells) never waits for other ranks."""
    import torch.distributed as dist

    return world_from_env() if dist.is_available() and dist.is_initialized() else SINGLE


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def local_device(device: torch.device, world: World) -> torch.device:
    """One GPU per local rank; CPU stays CPU."""
    if device.type == "cuda" and world.active:
        return torch.device("cuda", world.local_rank)
    return device


def timeout() -> timedelta:
    return timedelta(seconds=float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S))


def start(world: World, device: torch.device) -> torch.device:
    """Join the process group of `world` (once; gloo on CPU, nccl on CUDA) and return this rank's device."""
    import torch.distributed as dist

    device = local_device(device, world)
    if not world.active or dist.is_initialized():
        return device
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend(device), timeout=timeout(), device_id=device)
    else:
        dist.init_process_group(backend(device), timeout=timeout())
    return device


def stop() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_processes(env: Mapping[str, str] | None = None) -> int:
    """Processes of this cell on this machine (threads per process = cores // this)."""
    w = world_from_env(env)
    return max(1, w.local_size)


# ---------------------------------------------------------------- the shape of a step (pure)

def layout(global_batch: int, processes: int, micro_batch: int | None) -> tuple[int, int]:
    """(per-process batch, accumulation steps): a rank's slice of the global batch and how many
    micro-batches of at most `micro_batch` it is cut into (None: one micro-batch, no accumulation)."""
    per_process = math.ceil(global_batch / max(1, processes))
    micro = min(micro_batch or per_process, per_process)
    return per_process, math.ceil(per_process / max(1, micro))


def split(n: int, parts: int) -> list[int]:
    """`n` items in `parts` contiguous near-equal parts, the larger ones first."""
    q, r = divmod(n, parts)
    return [q + (i < r) for i in range(parts)]


def rank_slices(n: int, world: World, accumulation: int) -> list[tuple[int, int, float]]:
    """This rank's micro-batches of a global batch of `n` examples: (start, stop, share), share =
    the micro-batch's fraction of the global batch. An empty micro-batch becomes example 0 with
    share 0 (it runs, so DDP's collectives stay in step, and adds nothing)."""
    offsets = [0]
    for size in split(n, world.size):
        offsets.append(offsets[-1] + size)
    start, stop = offsets[world.rank], offsets[world.rank + 1]
    out, at = [], start
    for size in split(stop - start, accumulation):
        out.append((at, at + size, size / n) if size else (0, 1, 0.0))
        at += size
    return out


def slice_batch(batch: Mapping[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    return {k: v[start:stop] for k, v in batch.items()}


def batch_length(batch: Mapping[str, torch.Tensor]) -> int:
    return len(next(iter(batch.values())))


# ---------------------------------------------------------------- collectives (no-ops for one process)

def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The model DDP trains on this rank (the model itself for one process)."""
    if not world.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def gradient_sync(net: torch.nn.Module, sync: bool):
    """DDP all-reduces gradients in the backward of the last micro-batch only."""
    if sync or not hasattr(net, "no_sync"):
        return contextlib.nullcontext()
    return net.no_sync()


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast of the training forward (matmuls in bf16; weights, optimizer and eval in fp32):
    with train.precision=bf16, and always on CUDA; otherwise fp32."""
    if precision == "bf16" or device.type == "cuda":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision(device: torch.device, train_precision: str = "fp32") -> str:
    return "bf16-autocast" if device.type == "cuda" or train_precision == "bf16" else "fp32"


def reduce_sum(value: torch.Tensor, world: World) -> torch.Tensor:
    if world.active:
        import torch.distributed as dist

        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def broadcast(obj: Any, world: World) -> Any:
    """Rank 0's `obj` on every rank."""
    if not world.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.active:
        import torch.distributed as dist

        dist.barrier()


def seed_rank(world: World) -> None:
    """Rank r > 0 draws dropout from (last seed + r); rank 0 keeps the stream of one process."""
    if world.rank:
        torch.manual_seed(torch.initial_seed() + world.rank)


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_in_step(model: torch.nn.Module, world: World) -> None:
    """Every rank must hold the same weights after training (same masks, same updates)."""
    if not world.active:
        return
    import torch.distributed as dist

    digests: list[str | None] = [None] * world.size
    dist.all_gather_object(digests, weights_digest(model))
    if len(set(digests)) != 1:
        raise RuntimeError(f"ranks hold different weights after training: {digests}")


@contextlib.contextmanager
def main_lock(entry: Path, world: World) -> Iterator[None]:
    """Rank 0 holds the cache entry's file lock (`suite.runtime.building`); the other ranks take
    no lock and wait for rank 0's answers inside the block."""
    if not world.main:
        yield
        return
    from suite.runtime import building

    with building(entry):
        yield


class Gate:
    """Rank 0 decides once whether the cell runs (it may find it recorded, or fail before); the
    other ranks wait for that answer (`wait`). Leaving the block undecided answers "no"."""

    def __init__(self, world: World):
        self.world, self.decided = world, not world.active

    def open(self) -> None:
        if not self.decided:
            self.decided = True
            broadcast(True, self.world)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc) -> None:
        if not self.decided:
            self.decided = True
            broadcast(False, self.world)

    @staticmethod
    def wait(world: World) -> bool:
        return bool(broadcast(None, world))
