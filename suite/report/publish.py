"""What a report would change in the folder it replaces, and why `--publish` must not.

`--publish` rewrites the committed results/ (the published reference), so it is deliberate:
- from a clean tree only (tracked files outside results/ unmodified), unless `--allow-dirty`,
  which the page then says;
- it shows what it adds, changes and drops against the current results/leaderboard.json (records
  by cell id + machine) and which claims change verdict;
- it never drops a published record unless `--replace`, and never publishes profile=smoke records.
A local report only refuses to replace a report that has records with one that has none.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suite.errors import SparqError
from suite.report.leaderboard import load_board, machine_key, machine_label

SHOWN = 5  # cell ids listed per kind of change


class PublishError(SparqError):
    """A board that must not be published (a modified tree, dirty-tree records, a host path,
    published records it would drop); carries the changes it would have made."""

    def __init__(self, message: str, changes: Changes | None = None):
        super().__init__(message)
        self.changes = changes


class EmptyReport(SparqError):
    """A report with no records would replace one that has some."""


@dataclass
class Changes:
    """A new board against the one it replaces: record keys (cell id + machine) and verdicts."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    verdicts: list[tuple[str, str, str]] = field(default_factory=list)  # (claim id, before, after)

    def lines(self) -> list[str]:
        """A headline, then the cell ids of each kind of change and every verdict that changes."""
        out = [f"{len(self.added)} records added, {len(self.changed)} changed, {len(self.dropped)} dropped; "
               f"{len(self.verdicts)} claims change verdict"]
        for name, items in (("added", self.added), ("changed", self.changed), ("dropped", self.dropped)):
            if items:
                more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
                out.append(f"  {name}: {', '.join(items[:SHOWN])}{more}")
        out += [f"  claim {cid}: {before} -> {after}" for cid, before, after in self.verdicts]
        return out


def _key(rec: dict) -> tuple[str, str]:
    return rec.get("cell_id", ""), machine_key(rec)


def _name(rec: dict) -> str:
    return f"{rec.get('cell_id', '?')} ({machine_label(rec)})"


def verdict_map(verdicts: Sequence) -> dict[str, str]:
    """'<claim id> <profile> <point of view>' -> verdict, from ClaimVerdicts (or rows carrying one
    as `source`) or dicts."""
    out = {}
    for v in verdicts:
        v = getattr(v, "source", v)
        d = v.to_dict() if hasattr(v, "to_dict") else dict(v)
        key = " ".join(str(x) for x in (d.get("id"), d.get("profile"), d.get("at")) if x)
        out[key] = str(d.get("verdict"))
    return out


def changes(old: Sequence[dict], new: Sequence[dict], old_verdicts: dict[str, str],
            new_verdicts: dict[str, str]) -> Changes:
    """Pure: records added, changed (same cell and machine, other content) and dropped, and the
    claims whose verdict differs."""
    before, after = {_key(r): r for r in old}, {_key(r): r for r in new}
    out = Changes(added=[_name(r) for k, r in after.items() if k not in before],
                  changed=[_name(r) for k, r in after.items() if k in before and before[k] != r],
                  dropped=[_name(r) for k, r in before.items() if k not in after])
    out.verdicts = [(cid, old_verdicts.get(cid, "absent"), new_verdicts.get(cid, "absent"))
                    for cid in sorted(set(old_verdicts) | set(new_verdicts))
                    if old_verdicts.get(cid) != new_verdicts.get(cid)]
    return out


def previous_records(out: Path) -> list[dict] | None:
    """The records of the report in `out` (None when there is none); SparqError when its
    leaderboard.json is there but not readable."""
    path = Path(out) / "leaderboard.json"
    if not path.is_file():
        return None
    return load_board(path)[0]


def modified_files(root: Path | None = None) -> list[str] | None:
    """Tracked files changed in the working tree, results/ aside (what --publish writes); None
    when git cannot tell (not a checkout)."""
    from suite.paths import ROOT

    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                               ":(exclude)results"], cwd=root or ROOT, capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return [line[3:] for line in proc.stdout.splitlines() if line.strip()]


def tree_problem(allow_dirty: bool) -> tuple[str | None, str | None]:
    """(why the tree must not publish, or None; a note for the page when it publishes anyway)."""
    files = modified_files()
    if files is None:
        what = "git cannot tell whether the working tree is modified"
    elif files:
        what = f"the working tree is modified ({len(files)} files, e.g. {files[0]})"
    else:
        return None, None
    if allow_dirty:
        return None, f"Published with --allow-dirty: {what}; these results may not match their commit."
    return f"{what}: commit or stash first, or pass --allow-dirty (the page then says so)", None


def smoke_free(records: Sequence[dict]) -> tuple[list[dict], int]:
    """Records that may be published: profile=smoke ones never are. Returns (kept, left out)."""
    kept = [r for r in records if (r.get("axes") or {}).get("profile") != "smoke"]
    return kept, len(records) - len(kept)


def drop_problem(c: Changes, replace: bool) -> str | None:
    if not c.dropped or replace:
        return None
    return (f"it would drop {len(c.dropped)} published records (e.g. {c.dropped[0]}): merge them in "
            "(--merge results/leaderboard.json --tracking-uri URI), or pass --replace to drop them")
