"""The one exception type users see for bad input: printed as a single line, before any compute.

Every entry point (suite.run, suite.report, suite.sync, suite.grid, kernels.bench) prints an
expected failure (bad input, an OSError on its own files) as one `sparq: error:` line and exits
non-zero: `cli_errors` wraps a `main(argv) -> int`, `Parser` turns argparse's errors into the same
form. SPARQ_DEBUG=1 lets the traceback through instead.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable


class SparqError(Exception):
    """Bad input: unknown option, value out of range, missing file, corrupt checkpoint."""


class ConfigError(SparqError):
    """A config key has a value that is not allowed. The message names the key and the options."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


EXPECTED = (SparqError, OSError)  # what an entry point reports in one line (anything else: a bug)


def debug() -> bool:
    """SPARQ_DEBUG=1: show tracebacks instead of one-line errors."""
    return os.environ.get("SPARQ_DEBUG", "") not in ("", "0")


def one_line(e: BaseException) -> str:
    """An exception as one line: an OSError as 'what: file', anything else its first line."""
    if isinstance(e, OSError) and e.strerror:
        files = [str(f) for f in (e.filename, e.filename2) if f is not None]
        return f"{e.strerror}: {' -> '.join(files)}" if files else e.strerror
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def exit_code(e: BaseException) -> int:
    return 2 if isinstance(e, SparqError) else 1


def cli_errors(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap an entry point: an expected failure is one `sparq: error:` line on stderr and exit
    code 2 (bad input) or 1 (OSError); SPARQ_DEBUG=1 re-raises."""

    @functools.wraps(main)
    def run(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except EXPECTED as e:
            if debug():
                raise
            print(f"sparq: error: {one_line(e)}", file=sys.stderr)
            return exit_code(e)

    return run


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are a SparqError (one `sparq: error:` line under `cli_errors`)."""

    def error(self, message: str):
        raise SparqError(message)
