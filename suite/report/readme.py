"""README.md of a report folder, generated from the records it shows (never hand-written numbers):
how many records, their schema versions, profiles, tasks, clean/dirty trees and commits, what
measured latency or kept per-example outcomes, and which command rebuilds each experiment's
records (a grid of conf/experiment/, in `./reproduce.sh all` or not).

Pure: records in, markdown out (template `templates/results_README.md.j2`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from suite.paths import CONF_DIR, ROOT
from suite.report.machines import display_machines, measured_latency

HERE = Path(__file__).resolve().parent
_GRID = re.compile(r"(?:^|\s)\+experiment=([A-Za-z0-9_.-]+)")


@cache
def all_grids(script: Path = ROOT / "reproduce.sh") -> tuple[str, ...]:
    """The grids `./reproduce.sh all` runs (its EXPERIMENTS array)."""
    m = re.search(r"^EXPERIMENTS=\(([^)]*)\)", script.read_text(), re.M) if script.is_file() else None
    return tuple(m.group(1).split()) if m else ()


def rebuilt_by(commands: Sequence[str], profile: str) -> str:
    """The one command that re-runs these records: the grid their commands name (+experiment=X),
    the main job for plain `python -m suite.run` cells of the default experiment, else ''."""
    grids = {m.group(1) for c in commands if (m := _GRID.search(c))}
    suffix = "" if profile in ("quick", "") else f" profile={profile}"
    if len(grids) == 1 and all(_GRID.search(c) for c in commands):
        grid = grids.pop().removesuffix("_full")
        if (CONF_DIR / "experiment" / f"{grid}.yaml").is_file():
            return f"./reproduce.sh {grid}{suffix}"
    if commands and all(c.startswith("./reproduce.sh") for c in commands) and len(set(commands)) == 1:
        return commands[0]
    return ""


def _counts(values) -> str:
    """'quick ×58, smoke ×2' (most frequent first)."""
    return ", ".join(f"{v} ×{n}" for v, n in Counter(values).most_common()) or "–"


def facts(records: Sequence[dict], sources: Sequence[str], board_version: int, n_configs: int) -> dict:
    """Everything the README says about the records, computed from them."""
    by_exp: dict[str, list[dict]] = {}
    for r in records:
        by_exp.setdefault(r.get("experiment") or "?", []).append(r)
    in_all = set(all_grids())
    experiments = []
    for name, rs in sorted(by_exp.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        profiles = sorted({(r.get("axes") or {}).get("profile", "") for r in rs})
        cmd = rebuilt_by([r.get("command") or "" for r in rs], profiles[0] if len(profiles) == 1 else "?")
        grid = cmd.split()[1] if cmd.startswith("./reproduce.sh ") else ""
        experiments.append({
            "name": name, "records": len(rs), "rebuilt_by": cmd, "in_all": grid in in_all,
            "clean": sum(not r.get("git_dirty") for r in rs), "dirty": sum(bool(r.get("git_dirty")) for r in rs),
            "commits": len({r.get("git_sha") for r in rs}),
        })
    commits = Counter((r.get("git_sha") or "unknown")[:12] for r in records)
    return {
        "n": len(records), "configs": n_configs, "sources": list(sources), "board_version": board_version,
        "record_versions": _counts(f"v{r.get('schema_version', '?')}" for r in records),
        "profiles": _counts((r.get("axes") or {}).get("profile", "?") for r in records),
        "tasks": _counts((r.get("axes") or {}).get("task", "?") for r in records),
        "models": _counts((r.get("axes") or {}).get("model", "?") for r in records),
        "clean": sum(not r.get("git_dirty") for r in records), "dirty": sum(bool(r.get("git_dirty")) for r in records),
        "commits": _counts(commits.elements()), "n_commits": len(commits),
        "outcomes": sum(bool((r.get("outcomes") or {}).get("n")) for r in records),
        "latency": sum(measured_latency(r) for r in records),
        "machines": _counts(display_machines(records)),
        "experiments": experiments, "all_grids": list(all_grids()),
        "elsewhere": [e for e in experiments if not e["in_all"]],
    }


@cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=False, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def text(records: Sequence[dict], sources: Sequence[str], board_version: int, n_configs: int,
         published: bool) -> str:
    return _environment().get_template("results_README.md.j2").render(
        published=published, **facts(records, sources, board_version, n_configs))
