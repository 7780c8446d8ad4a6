"""README.md of a report folder, generated from the records it shows (never hand-written numbers):
how many records, their schema versions, profiles, tasks, clean/dirty trees and commits, what
measured latency or kept per-example outcomes, and which command rebuilds each record: the grid
of conf/experiment/ whose sweep launches exactly its overrides (in `./reproduce.sh all` or not),
the main job, or else only its own command (e.g. a cell the verdict driver added).

Records in, markdown out (template `templates/results_README.md.j2`); the grids' sweeps are
expanded with Hydra (suite.sweep.experiment_jobs), nothing runs.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from suite.paths import CONF_DIR, ROOT
from suite.report.machines import display_machines, measured_latency

HERE = Path(__file__).resolve().parent
RUN = ("python", "-m", "suite.run")


@cache
def all_grids(script: Path = ROOT / "reproduce.sh") -> tuple[str, ...]:
    """The grids `./reproduce.sh all` runs (its EXPERIMENTS array)."""
    m = re.search(r"^EXPERIMENTS=\(([^)]*)\)", script.read_text(), re.M) if script.is_file() else None
    return tuple(m.group(1).split()) if m else ()


@cache
def grid_jobs(experiment: str) -> frozenset[frozenset[str]]:
    """The override sets of the cells the sweep of conf/experiment/<experiment>.yaml launches."""
    if not (CONF_DIR / "experiment" / f"{experiment}.yaml").is_file():
        return frozenset()
    from suite.sweep import experiment_jobs

    return frozenset(frozenset(job) for job in experiment_jobs(experiment)[1])


def rebuilt_by(command: str) -> str:
    """The reproduce.sh command that re-runs a record of `command` (python -m suite.run ...): the grid
    whose sweep launches exactly these overrides (a profile= override is the grid's argument), the
    main job for no override but a profile; '' for any other cell (only its own command re-runs it)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return ""
    if tuple(words[:3]) != RUN:
        return command if words[:1] == ["./reproduce.sh"] else ""
    overrides = words[3:]
    profile = [o for o in overrides if o.startswith("profile=")]
    rest = frozenset(o for o in overrides if not o.startswith("profile="))
    suffix = "".join(f" {p}" for p in profile if p != "profile=quick")
    if not rest:
        return f"./reproduce.sh{suffix}"
    grids = [o.removeprefix("+experiment=") for o in rest if o.startswith("+experiment=")]
    if len(grids) == 1 and rest in grid_jobs(grids[0]):
        return f"./reproduce.sh {grids[0].removesuffix('_full')}{suffix}"
    return ""


def _counts(values) -> str:
    """'quick ×58, smoke ×2' (most frequent first)."""
    return ", ".join(f"{v} ×{n}" for v, n in Counter(values).most_common()) or "–"


def facts(records: Sequence[dict], sources: Sequence[str], board_version: int, n_configs: int) -> dict:
    """Everything the README says about the records, computed from them."""
    by_source: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        by_source.setdefault((r.get("experiment") or "?", rebuilt_by(r.get("command") or "")), []).append(r)
    in_all = set(all_grids())
    experiments = []
    for (name, cmd), rs in sorted(by_source.items(), key=lambda kv: (kv[0][0], not kv[0][1], -len(kv[1]), kv[0][1])):
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
