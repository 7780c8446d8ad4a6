"""Records checked where they enter: the MLflow store (load.py), merged boards (leaderboard.py) and
the sync spool (suite/sync.py) all pass each record through `check_record` before anything else
reads it.

A record is accepted when it is a `CellRecord` of a schema version this reader knows, every string
is bounded (what a table, a plot or the page prints must stay small) and every number is finite or
null (NaN and infinities are null where the record allows null, refused elsewhere). What fails is
`InvalidRecord`, one line saying where and why; the readers skip it, name it and count it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from suite.errors import SparqError
from suite.record import SCHEMA_VERSION, CellRecord

MAX_LABEL = 200  # characters of a string under `axes` and of any key: labels of tables, plots, filters
MAX_TEXT = 4096  # characters of any other string (commands, tags, config values)
MAX_OUTCOMES = 2_000_000  # characters or values of outcomes.predictions / references (one per example)
MAX_RECORD_BYTES = 64 * 2**20  # a result.json larger than this is not read


class InvalidRecord(SparqError):
    """A record that must not enter a report; the message is one line."""


@dataclass(frozen=True)
class Skipped:
    """A record left out: where it was (a run, a board's record, a spool file) and why."""

    where: str
    why: str

    def line(self) -> str:
        return f"skipped {self.where}: {self.why}"


def parse_record(text: str | bytes) -> Any:
    """JSON text of one record as Python data; InvalidRecord when it is not JSON (a truncated file)."""
    if len(text) > MAX_RECORD_BYTES:
        raise InvalidRecord(f"{len(text)} bytes, more than a record may hold ({MAX_RECORD_BYTES})")
    if not text.strip():
        raise InvalidRecord("empty file")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, too-long integers
        raise InvalidRecord(f"not valid JSON (truncated?): {str(e).splitlines()[0][:200]}") from None


def check_record(data: Any) -> dict:
    """`data` (a parsed result.json) as validated CellRecord data, JSON-ready; raises
    InvalidRecord saying why it is not one."""
    if not isinstance(data, dict):
        raise InvalidRecord(f"not a record: a JSON {type(data).__name__}, expected an object")
    version = data.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidRecord(f"schema_version {str(version)[:40]!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise InvalidRecord(f"schema_version {version} is newer than this reader's ({SCHEMA_VERSION}); "
                            "update sparq to read it")
    _check_strings(data, "")
    try:
        record = CellRecord.model_validate(data)
    except ValidationError as e:
        raise InvalidRecord(first_error(e)) from None
    _check_finite(record.model_dump(), "")
    return record.to_dict()


def first_error(e: ValidationError) -> str:
    """Pydantic's errors as one line: the first one's field, message and input, and how many more."""
    errors = e.errors(include_url=False)
    if not errors:
        return str(e).splitlines()[0]
    err = errors[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "record"
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {_short(got)})"
    more = f"; and {len(errors) - 1} more" if len(errors) > 1 else ""
    return f"{where}: {err.get('msg', 'invalid')}{shown}{more}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _limit(path: str) -> int:
    if path.startswith("outcomes."):
        return MAX_OUTCOMES
    return MAX_LABEL if path.startswith("axes.") else MAX_TEXT


def _check_strings(value: Any, path: str) -> None:
    """Every string (and key) within its bound, and the outcomes' value lists too."""
    if isinstance(value, str):
        if len(value) > _limit(path):
            raise InvalidRecord(f"{path or 'record'}: a string of {len(value)} characters "
                                f"(at most {_limit(path)})")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > MAX_LABEL:
                raise InvalidRecord(f"{path or 'record'}: a key of {len(str(key))} characters (at most {MAX_LABEL})")
            _check_strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        if len(value) > MAX_OUTCOMES:
            raise InvalidRecord(f"{path}: a list of {len(value)} values (at most {MAX_OUTCOMES})")
        for i, item in enumerate(value):
            _check_strings(item, f"{path}[{i}]")


def _check_finite(value: Any, path: str) -> None:
    """No NaN or infinity left where the record has no null (metrics already hold null for them)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRecord(f"{path}: {value} (numbers must be finite, or null where allowed)")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{path}[{i}]")


def checked(records: list, where: str) -> tuple[list[dict], list[Skipped]]:
    """The valid records of a list (a board's), and a `Skipped` naming `where` + index for each other."""
    good, skipped = [], []
    for i, data in enumerate(records):
        try:
            good.append(check_record(data))
        except InvalidRecord as e:
            skipped.append(Skipped(f"{where} record {i}", str(e)))
    return good, skipped
