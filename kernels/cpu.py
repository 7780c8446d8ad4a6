"""Run-time CPU feature detection: which kernel path can run here, and flags to record."""

from __future__ import annotations

import functools
import os
import platform

_INTERESTING = ("avx2", "fma", "bmi2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
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


def machine_label() -> str:
    """Short name of this machine for result rows: "<CPU model> (<LLVM CPU name>)"."""
    return f"{model_name()} ({cpu_name()})"


def cpu_flags_string() -> str:
    """Compact, stable description recorded with every benchmark figure."""
    flags = cpuinfo_flags() or llvm_host_features()
    have = [f for f in _INTERESTING if f in flags or f.replace("_", "") in flags]
    return f"{model_name()} | llvm:{cpu_name()} | cores:{os.cpu_count()} | " + " ".join(have)


def jit_disabled() -> bool:
    import numba

    return bool(numba.config.DISABLE_JIT)


PATHS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx2", "portable")  # best first
_NEED = {  # (LLVM feature names, /proc/cpuinfo flag names)
    "amx_int8": ({"avx512f", "avx512bw", "avx512vnni", "amx-tile", "amx-int8"},
                 {"avx512f", "avx512bw", "avx512_vnni", "amx_tile", "amx_int8"}),
    "avx512_vnni": ({"avx512f", "avx512bw", "avx512vnni"}, {"avx512f", "avx512bw", "avx512_vnni"}),
    "avx_vnni": ({"avx2", "avxvnni"}, {"avx2", "avx_vnni"}),
    "avx2": ({"avx2"}, {"avx2"}),
}


def path_supported(path: str) -> bool:
    """True when the kernels of ``path`` can be compiled *and* run here: LLVM (what Numba
    compiles for) and /proc/cpuinfo (what the OS enables) both report the features, and the
    JIT is on. ``portable`` always can."""
    if path == "portable":
        return True
    if path not in _NEED or jit_disabled():
        return False
    llvm, info = _NEED[path]
    if not llvm <= llvm_host_features():
        return False
    flags = cpuinfo_flags()
    if flags and not info <= flags:
        return False
    return path != "amx_int8" or amx_permitted()


@functools.lru_cache(maxsize=1)
def amx_permitted() -> bool:
    """Linux gives a process the AMX tile data state only after
    ``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`` (asked for here, once; without it the
    first tile instruction is a SIGILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(158, 0x1023, 18) == 0  # x86-64 arch_prctl(0x1023, 18)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return False


def supported_paths() -> list[str]:
    return [p for p in PATHS if path_supported(p)]


_PATH_MEMO: dict = {}


def _path_state() -> tuple[str, bool]:
    """(kernel path, forced?) memoised on the two environment switches (called on every
    kernel call)."""
    data = getattr(os.environ, "_data", None)  # raw dict: os.environ.get costs ~2-3 us
    if isinstance(data, dict) and os.name == "posix":
        key = (data.get(b"SPARQ_KERNEL_ISA"), data.get(b"SPARQ_KERNELS_PORTABLE"))
    else:  # pragma: no cover
        key = (os.environ.get("SPARQ_KERNEL_ISA"), os.environ.get("SPARQ_KERNELS_PORTABLE"))
    if key not in _PATH_MEMO:
        _PATH_MEMO[key] = (_kernel_path(), bool(_forced_name()))
    return _PATH_MEMO[key]


def kernel_path() -> str:
    """The forced path, else the best supported one (see ``_kernel_path``)."""
    return _path_state()[0]


def forced_path() -> str | None:
    """The path ``SPARQ_KERNEL_ISA`` forces (``SPARQ_KERNELS_PORTABLE=1``: portable), or None."""
    path, forced = _path_state()
    return path if forced else None


def _forced_name() -> str:
    forced = os.environ.get("SPARQ_KERNEL_ISA", "").strip().lower()
    if not forced and os.environ.get("SPARQ_KERNELS_PORTABLE", "0") not in ("", "0"):
        forced = "portable"
    return forced


def _kernel_path() -> str:
    """The forced path (``SPARQ_KERNEL_ISA``: a lower one, e.g. avx2 on an AVX-512 machine; an
    unsupported one is an error), else the best one this CPU and LLVM support (amx_int8 >
    avx512_vnni > avx_vnni > avx2 > portable): the default of ``ops.linear``, whose autotuned
    dispatch (``kernels.dispatch``) may pick another supported path per layer shape and M.
    ``SPARQ_KERNELS_PORTABLE=1`` (older switch) means ``SPARQ_KERNEL_ISA=portable``."""
    forced = _forced_name()
    if forced:
        if forced not in PATHS:
            raise ValueError(f"SPARQ_KERNEL_ISA={forced!r}: choose one of {', '.join(PATHS)}")
        if not path_supported(forced):
            why = "the JIT is disabled" if jit_disabled() else "this CPU/LLVM lacks it"
            raise RuntimeError(f"SPARQ_KERNEL_ISA={forced}: that kernel path cannot run here "
                               f"({why}); supported: {', '.join(supported_paths())}")
        return forced
    return supported_paths()[0]


def has_vnni512() -> bool:
    """True when the AVX-512 VNNI kernels run (``kernel_path()`` is avx512_vnni, or amx_int8,
    whose layers without full block rows run them)."""
    return kernel_path() in ("amx_int8", "avx512_vnni")


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


def _cpu_ticks() -> tuple[int, int, int] | None:
    """(all CPU ticks, busy ticks of the machine, ticks of this process) from /proc."""
    try:
        with open("/proc/stat") as fh:
            v = [int(a) for a in fh.readline().split()[1:]]
        with open("/proc/self/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(v), sum(v) - v[3] - (v[4] if len(v) > 4 else 0), int(f[11]) + int(f[12])


class OtherLoad:
    """Share of the machine's CPU time that *other* processes used between ``OtherLoad()`` and
    ``share()`` (0..1; None off Linux): what the timing window could not keep away."""

    def __init__(self):
        self.start = _cpu_ticks()

    def share(self) -> float | str:
        end = _cpu_ticks()
        if self.start is None or end is None or end[0] == self.start[0]:
            return ""
        other = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return round(max(0.0, other / (end[0] - self.start[0])), 3)
