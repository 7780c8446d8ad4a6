"""A machine-wide quiet window for timing: latency is only valid on an idle machine.

Grid cells run in parallel (2 x 1 thread on 2 cores), and every compressed cell times its encoder.
`timing_window()` makes that honest: it takes a machine-wide lock (one timer at a time), raises a
flag that every sparq training and eval loop on the machine checks between steps
(`yield_to_timer()`: it sleeps while another live process holds the flag), then waits until the
CPUs are quiet (from /proc/stat) before the caller times. What it saw is returned and logged with
the latency: the wait, and the busy share of the machine's CPUs just before timing.

The flag lives in `$SPARQ_TIMING_DIR` (default: the system temp dir), so every checkout on the
machine shares it. A flag left by a dead process is ignored (its pid is checked).
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from suite.procs import pid_alive

FLAG = "sparq-timing.active"
LOCK = "sparq-timing.lock"
QUIET_BUSY = 0.15      # machine CPU busy share below which timing starts
MAX_SETTLE_S = 45.0    # the longest wait for quiet (a training step of another cell is ~2 s; its
                       # model loading, packing or a JIT compile runs until its next yield point)
MAX_YIELD_S = 600.0    # a loop never waits longer than this for a timer


def timing_dir() -> Path:
    return Path(os.environ.get("SPARQ_TIMING_DIR") or tempfile.gettempdir())


def timer_pid() -> int | None:
    """The pid of a live process holding the timing flag, other than this one."""
    try:
        pid = int((timing_dir() / FLAG).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid and pid != os.getpid() and pid_alive(pid) else None


def yield_to_timer() -> float:
    """Called between training / eval steps: wait while another process times. Seconds waited."""
    if not (timing_dir() / FLAG).exists():  # the hot path: one stat per step
        return 0.0
    start = time.monotonic()
    while timer_pid() is not None and time.monotonic() - start < MAX_YIELD_S:
        time.sleep(0.1)
    return time.monotonic() - start


def _cpu_times() -> tuple[int, int] | None:
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:  # not Linux: no quiet check
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values), idle


def busy_share(window_s: float = 0.5) -> float | None:
    """Busy share of all CPUs over `window_s` (0..1); None where /proc/stat is missing."""
    a = _cpu_times()
    time.sleep(window_s)
    b = _cpu_times()
    if a is None or b is None or b[0] == a[0]:
        return None
    return 1.0 - (b[1] - a[1]) / (b[0] - a[0])


@dataclass
class Quiet:
    waited_s: float = 0.0
    busy: float | None = None      # busy share of the machine's CPUs just before timing
    quiet: bool = False            # busy < QUIET_BUSY was reached


@contextmanager
def timing_window(max_settle_s: float = MAX_SETTLE_S):
    """Hold the machine-wide timing lock and flag; wait for quiet; yield a `Quiet`."""
    from filelock import FileLock

    d = timing_dir()
    d.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with FileLock(str(d / LOCK)):
        flag = d / FLAG
        tmp = d / f"{FLAG}.{os.getpid()}"
        tmp.write_text(str(os.getpid()))
        os.replace(tmp, flag)
        try:
            q = Quiet()
            while True:
                q.busy = busy_share()
                q.quiet = q.busy is None or q.busy < QUIET_BUSY
                if q.quiet or time.monotonic() - start > max_settle_s:
                    break
            q.waited_s = time.monotonic() - start
            yield q
        finally:
            try:
                if flag.read_text().strip() == str(os.getpid()):
                    flag.unlink()
            except FileNotFoundError:
                pass
