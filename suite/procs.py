"""Process facts shared by the run lifecycle (suite/recorded.py, suite/tracking.py) and the timing
window (suite/quiet.py)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
