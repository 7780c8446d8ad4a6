"""``python -m kernels.bench.profile``: where an encoder's forward time goes, by module class
(self time: a module's wall time minus its children's), for the packed sparq encoder with each
fusion stage switched on in turn. Same encoders as ``--model`` (random weights, 90% block1x4,
seq 128). Run it on an idle machine; it prints shares, not a benchmark verdict."""

from __future__ import annotations

import argparse
import copy
import time
from collections import defaultdict

import torch

from .. import cpu
from ..attention import fuse_attention
from ..encoder import fuse_epilogues, lean_feed_forward
from ..linear import convert_model, fuse_shared_input
from .model import SEQ, build_encoder


def self_times(model: torch.nn.Module, run, repeats: int) -> tuple[dict[str, float], float]:
    """{module class: mean self ms per forward}, mean forward ms (hooks on every module)."""
    totals: dict[str, float] = defaultdict(float)
    stack: list[list[float]] = []

    def pre(mod, *_):
        stack.append([time.perf_counter(), 0.0])

    def post(mod, *_):
        start, child = stack.pop()
        took = time.perf_counter() - start
        totals[type(mod).__name__] += took - child
        if stack:
            stack[-1][1] += took

    hooks = [h for m in model.modules() for h in (m.register_forward_pre_hook(pre),
                                                   m.register_forward_hook(post))]
    try:
        run()  # warm-up (JIT, caches)
        totals.clear()
        t0 = time.perf_counter()
        for _ in range(repeats):
            run()
        wall = (time.perf_counter() - t0) / repeats * 1e3
    finally:
        for h in hooks:
            h.remove()
    return {k: v / repeats * 1e3 for k, v in totals.items()}, wall


def stages(name: str):
    base = convert_model(build_encoder(name, pattern="block1x4"), format="block1x4")
    shared = copy.deepcopy(base)
    fuse_shared_input(shared)
    epi = copy.deepcopy(shared)
    fuse_epilogues(epi)
    att = copy.deepcopy(epi)
    fuse_attention(att)
    lean = copy.deepcopy(att)
    lean_feed_forward(lean)
    return {"packed": base, "+qkv": shared, "+gelu/addnorm": epi, "+attention": att,
            "+lean feed-forward": lean}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="minilm", choices=["minilm", "bert-base"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"cpu: {cpu.cpu_flags_string()}\nthreads: {a.threads}  kernel path: {cpu.kernel_path()}")
    ids = torch.randint(1000, 30000, (a.batch, SEQ))
    mask = torch.ones(a.batch, SEQ, dtype=torch.long)
    for stage, model in stages(a.model).items():
        def run(model=model):
            with torch.inference_mode():
                model(input_ids=ids, attention_mask=mask)
        shares, wall = self_times(model, run, a.repeats)
        top = sorted(shares.items(), key=lambda kv: -kv[1])
        print(f"\n{a.model} b{a.batch} seq {SEQ} {stage}: {wall:.2f} ms per forward")
        for k, ms in top:
            if ms / wall >= 0.005:
                print(f"  {k:24s} {ms:8.3f} ms  {100 * ms / wall:5.1f}%")


if __name__ == "__main__":
    main()
