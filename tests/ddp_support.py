"""One training run of the tiny model, on one process or as one rank of a gloo group, recording the
loss of every step (the global batch's mean loss, as the loop computes it) and the final weights."""

from __future__ import annotations

import os
from pathlib import Path

import torch

N_EXAMPLES = 37  # batches of 8: 8, 8, 8, 8, 5 (the short last batch splits 3 + 2 over two ranks)
BATCH = 8
EPOCHS = 2


def features(n: int = N_EXAMPLES, vocab: int = 1000, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(4, 20, (1,), generator=g))
        out.append({"input_ids": torch.randint(5, vocab, (length,), generator=g).tolist(),
                    "labels": int(torch.randint(0, 2, (1,), generator=g))})
    return out


def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    width = max(len(f["input_ids"]) for f in items)
    ids = torch.zeros((len(items), width), dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for i, f in enumerate(items):
        ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[i, : len(f["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["labels"] for f in items])}


def train(model_dir: str, world, micro_batch: int | None) -> dict:
    """(per-step losses, final weights) of 2 epochs over the toy set, no dropout."""
    from transformers import AutoModelForSequenceClassification

    from suite import distributed
    from suite.config import ProfileConfig, TrainConfig
    from suite.train import fine_tune, train_loader

    steps: list[float] = []
    reduce_sum = distributed.reduce_sum

    def recording(value, w):  # the loop's one seam where the step's global loss passes
        out = reduce_sum(value, w)
        steps.append(float(out))
        return out

    distributed.reduce_sum = recording
    try:
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, hidden_dropout_prob=0.0,
                                                                   attention_probs_dropout_prob=0.0)
        loader = train_loader(features(), collate, BATCH, seed=3)
        train_cfg = TrainConfig(epochs=EPOCHS, lr=1e-3, batch_size=BATCH, micro_batch_size=micro_batch,
                                warmup_ratio=0.0)
        stats = fine_tune(model, loader, train_cfg, ProfileConfig(name="test"), (), torch.device("cpu"),
                          progress=False, world=world)
    finally:
        distributed.reduce_sum = reduce_sum
    return {"losses": steps, "stats": stats,
            "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def rank_main(rank: int, size: int, port: int, model_dir: str, micro_batches: list, out_dir: str) -> None:
    """torch.multiprocessing.spawn target: one rank of a gloo group (as torchrun would set it up),
    one training per micro-batch size (None: no accumulation); `rank<r>.pt` holds their results."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(size), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(size)})
    torch.set_num_threads(1)
    from suite import distributed

    world = distributed.world_from_env()
    distributed.start(world, torch.device("cpu"))
    try:
        results = [train(model_dir, world, micro) for micro in micro_batches]
    finally:
        distributed.stop()
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
