"""Run-time CPU feature detection: which kernel path can run here, and flags to record."""

from __future__ import annotations

import functools
import os
import platform

_INTERESTING = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                "avx512_bf16", "avx512vbmi", "amx_tile", "amx_int8", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpuinfo_flags() -> frozenset[str]:
    """Flags from /proc/cpuinfo (empty on systems without it)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def llvm_host_features() -> frozenset[str]:
    """Features LLVM (what Numba compiles for) reports as enabled on this host."""
    try:
        import llvmlite.binding as ll

        feats = ll.get_host_cpu_features()
        return frozenset(k for k, v in feats.items() if v)
    except Exception:  # pragma: no cover - llvmlite without host feature support
        return frozenset()


def cpu_name() -> str:
    try:
        import llvmlite.binding as ll

        return ll.get_host_cpu_name()
    except Exception:  # pragma: no cover
        return platform.processor() or "unknown"


def model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags_string() -> str:
    """Compact, stable description recorded with every benchmark figure."""
    flags = cpuinfo_flags() or llvm_host_features()
    have = [f for f in _INTERESTING if f in flags or f.replace("_", "") in flags]
    return f"{model_name()} | llvm:{cpu_name()} | cores:{os.cpu_count()} | " + " ".join(have)


def jit_disabled() -> bool:
    import numba

    return bool(numba.config.DISABLE_JIT)


def has_vnni512() -> bool:
    """True when the AVX-512 VNNI kernels can be compiled *and* run here.

    Both the kernel (cpuinfo) and LLVM must agree; ``SPARQ_KERNELS_PORTABLE=1`` forces the
    portable path, and the JIT being disabled always does.
    """
    if os.environ.get("SPARQ_KERNELS_PORTABLE", "0") not in ("", "0"):
        return False
    if jit_disabled():
        return False
    llvm = llvm_host_features()
    need = {"avx512f", "avx512bw", "avx512vnni"}
    if not need <= llvm:
        return False
    info = cpuinfo_flags()
    return not info or {"avx512f", "avx512bw", "avx512_vnni"} <= info



def worker_threads(fn, min_ticks: int = 2) -> set[str]:
    """Thread ids (other than the caller's) that gained >= ``min_ticks`` of CPU time while
    ``fn()`` ran (Linux /proc; empty elsewhere). Used to check that torch's and numba's parallel
    regions run on the same OpenMP worker threads (one runtime, one team), not on two pools
    that fight over the cores."""
    import threading

    def ticks() -> dict[str, int]:
        out = {}
        try:
            for t in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{t}/stat") as fh:
                    f = fh.read().rsplit(")", 1)[1].split()
                out[t] = int(f[11]) + int(f[12])
        except OSError:
            pass
        return out

    me = str(threading.get_native_id())
    before = ticks()
    fn()
    after = ticks()
    return {t for t, v in after.items() if t != me and v - before.get(t, 0) >= min_ticks}
