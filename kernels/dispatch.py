"""Autotuned dispatch: which kernel path runs a layer, per (layer shape, M bucket, format).

The first call of a layer in an M bucket times the runner of every tunable path this CPU has
(``tunable_paths``: the AMX, AVX-512 VNNI and AVX2-family kernels; not the portable ones) on a
random input of the bucket's size, in turns, and keeps the fastest. The choice is cached in
memory and in a small JSON file per CPU (model, LLVM name, flags) and kernel version under the
cache dir (``$SPARQ_CACHE_DIR`` or ``.cache/`` at the project root, as ``suite.paths``):
``kernels/dispatch-<hash>.json``, so a later process reuses it without timing.
A choice timed while other processes took more than ``NOISY`` of the CPUs (a 2-thread kernel
then waits for whole scheduler slices) serves this process only: the file marks it and the
next process times again. ``SPARQ_KERNEL_ISA`` forces one path (nothing is timed); ``SPARQ_KERNEL_AUTOTUNE=0`` keeps the
static order (``cpu.kernel_path()``). Layers below ``MIN_WORK`` multiply-adds per row are not
timed (the static path; timing them would cost more than it saves).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from . import cpu

VERSION = 1  # bump when a kernel changes what is fastest: old cache files are then ignored
M_BUCKETS = ((1, 1), (8, 8), (64, 64), (256, 128), (math.inf, 512))  # (largest M, M timed)
MIN_WORK = 64 * 1024  # N x K below which a layer keeps the static path
BUDGET_S = 0.03  # timing per candidate and key, split over ROUNDS turns
ROUNDS = 3
NOISY = 0.25  # others' share of the CPUs while timing above which a choice is re-timed later
CLOCK = time.perf_counter  # tests inject a fake clock
LOAD = cpu.OtherLoad  # others' CPU share while timing (tests inject a quiet one)

_MEMO: dict[str, str] = {}


def bucket(m: int) -> int:
    """The M bucket of ``m`` rows: the index into ``M_BUCKETS``."""
    for i, (hi, _) in enumerate(M_BUCKETS):
        if m <= hi:
            return i
    return len(M_BUCKETS) - 1  # pragma: no cover


def enabled() -> bool:
    return os.environ.get("SPARQ_KERNEL_AUTOTUNE", "1").strip().lower() not in ("0", "false", "no")


def tunable_paths() -> list[str]:
    """The supported paths with kernels of their own in this process: amx_int8, avx512_vnni,
    and the AVX2 family built here (``avx2_intrinsics.ISA``: avx_vnni or avx2, one per
    process)."""
    paths = cpu.supported_paths()
    out = [p for p in ("amx_int8", "avx512_vnni") if p in paths]
    if "avx2" in paths:
        from .avx2_intrinsics import ISA

        out.append(ISA)
    return out


def layer_key(p, m: int) -> str:
    """The cache key of packed layer ``p`` at ``m`` rows: format, bits, N x K, weight density
    (to 0.05), M bucket, threads."""
    import numba

    density = round(1.0 - p.sparsity, 2)
    density = round(round(density * 20) / 20, 2)
    hi = M_BUCKETS[bucket(m)][0]
    return (f"{p.format}/{p.bits}b/{p.out_features}x{p.in_features}/d{density}/"
            f"m{'inf' if hi == math.inf else int(hi)}/t{numba.get_num_threads()}")


def cache_file() -> Path:
    root = Path(os.environ.get("SPARQ_CACHE_DIR") or Path(__file__).resolve().parent.parent / ".cache")
    ident = f"{cpu.cpu_flags_string()}|v{VERSION}"
    return root / "kernels" / f"dispatch-{hashlib.sha256(ident.encode()).hexdigest()[:12]}.json"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data.get("choices", {}) if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path: Path, key: str, entry: dict) -> None:
    """Merge one choice into the file (atomic replace; a lost race only loses that entry)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        choices = _read(path)
        choices[key] = entry
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"cpu": cpu.cpu_flags_string(), "version": VERSION,
                                   "choices": choices}, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a read-only cache dir: the choice stays in memory
        pass


def time_runs(runs: dict, x: np.ndarray, y: np.ndarray, clock=None) -> dict[str, float]:
    """Seconds per call of each ``run(x, y)``: after one warm-up call each, ``ROUNDS`` turns
    over the candidates, each turn calling one until its share of ``BUDGET_S`` has passed (at
    least once); the best turn of each."""
    clock = clock or CLOCK
    for run in runs.values():
        run(x, y)
    best = dict.fromkeys(runs, math.inf)
    share = BUDGET_S / ROUNDS
    for _ in range(ROUNDS):
        for name, run in runs.items():
            n, t0 = 0, clock()
            while True:
                run(x, y)
                n += 1
                dt = clock() - t0
                if dt >= share or n >= 1000:
                    break
            best[name] = min(best[name], dt / n)
    return best


def choose(p, m: int, build, candidates: list[str] | None = None) -> str:
    """The path to run packed layer ``p`` at ``m`` rows: forced, static, cached, or timed now
    among ``candidates`` (default ``tunable_paths()``). ``build(path)`` returns that path's
    ``run(x, y)`` for this layer."""
    forced = cpu.forced_path()
    if forced is not None:
        return forced
    paths = tunable_paths() if candidates is None else candidates
    if not enabled() or len(paths) < 2 or p.out_features * p.in_features < MIN_WORK:
        return cpu.kernel_path()
    key = layer_key(p, m)
    if key in _MEMO:
        return _MEMO[key]
    path = cache_file()
    entry = _read(path).get(key)
    if not (isinstance(entry, dict) and entry.get("path") in paths
            and (entry.get("others_busy") or 0.0) <= NOISY):
        rows = M_BUCKETS[bucket(m)][1]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((rows, p.in_features)).astype(np.float32)
        y = np.empty((rows, p.out_features), np.float32)
        others = LOAD()
        secs = time_runs({q: build(q) for q in paths}, x, y)
        entry = {"path": min(secs, key=secs.get), "others_busy": others.share() or 0.0,
                 "us": {q: round(s * 1e6, 2) for q, s in secs.items()}}
        _write(path, key, entry)
    _MEMO[key] = entry["path"]
    return entry["path"]


def reset() -> None:
    """Forget the in-memory choices (the file stays)."""
    _MEMO.clear()
