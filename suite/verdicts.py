"""The verdict driver: spend compute only where a claim's verdict needs it.

    python -m suite.verdicts [--hours H] [--tasks sst2,mrpc] [--jobs 2] [--dry-run] [--rounds R]

Each round judges the claims on the recorded cells (suite/report/claims.py), reads what every
inconclusive verdict needs (suite/report/judge.py `Need`: a budget twin at a larger budget, more
seeds, a re-run with per-example outcomes) and, for `--tasks`, the same evidence on each task it
lacks; turns each need into the command of one cell (the evidence record's own overrides with the
budget, seed or task changed); prices it (suite/grid_eta.py); keeps the cheapest whole decisions
that fit in what is left of the cap; prints the plan (cell, estimate, the verdicts it serves); runs
it, two cells at a time, longest first; and judges again. It stops when every claim is decided,
nothing more can be planned, or the next decision would pass the cap, and then says per claim what
deciding it would still cost, or what no budget buys. Resumable: a recorded cell is never run twice.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from suite.report.claims import ClaimVerdict, verdicts
from suite.report.judge import INCONCLUSIVE, NOT_RUN
from suite.report.records import Cell, group_cells

RUN = ["python", "-m", "suite.run"]
MAX_ROUNDS = 6


@dataclass
class Planned:
    """One cell to run: its overrides, what it serves, its prior wall seconds."""

    overrides: tuple[str, ...]
    serves: set[str] = field(default_factory=set)  # claim rows ('PO1 paper: 85-90%')
    why: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def command(self) -> str:
        return " ".join(["python -m suite.run", *(shlex.quote(o) for o in self.overrides)])


@dataclass
class Decision:
    """The cells that would decide one inconclusive verdict row, and what they cost."""

    row: str
    cells: list[Planned]
    unavailable: list[str]

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.cells)


# ------------------------------------------------------------------ needs -> cells (pure)

def overrides_of(record: dict) -> list[str]:
    """The overrides of a record's reproducing command (python -m suite.run ...)."""
    parts = shlex.split(record.get("command") or "")
    return [p for p in parts[3:] if "=" in p] if parts[:3] == RUN else []


def with_value(overrides: Sequence[str], key: str, value: str) -> tuple[str, ...]:
    """`overrides` with key=value set (replacing the key's override if there is one)."""
    out = [o for o in overrides if o.lstrip("+~").partition("=")[0] != key]
    return (*out, f"{key}={value}")


def row_name(v: ClaimVerdict) -> str:
    return " ".join(x for x in (v.id, v.at) if x)


def _seeds_of(cell_id: str, cells: Sequence[Cell]) -> list[int]:
    key = next((c.key() for c in cells if c.cell_id == cell_id), None)
    return sorted({int(c.seed) for c in cells if c.key() == key and c.seed.isdigit()})


def need_cells(v: ClaimVerdict, by_id: dict[str, Cell], cells: Sequence[Cell]) -> tuple[list[Planned], list[str]]:
    """The cells that meet one verdict's needs; the needs no cell meets (in words)."""
    planned, unavailable = [], []
    for need in v.needs:
        rec = by_id.get(need.get("cell_id", ""))
        kind, text = need.get("kind"), need.get("text", need.get("kind", ""))
        base = overrides_of(rec.record) if rec is not None else []
        if kind == "unavailable" or not base:
            unavailable.append(text if rec is None or base else f"{text} (its record has no command to re-run)")
        elif kind == "budget":
            planned.append(Planned(with_value(base, "profile.budget", f"{need['factor']:g}"), why=[text]))
        elif kind == "seeds":
            have = _seeds_of(rec.cell_id, cells)
            new = [s for s in range(42, 42 + 4 * need["count"]) if s not in have][:max(0, need["count"] - len(have))]
            planned += [Planned(with_value(base, "seed", str(s)), why=[text]) for s in new]
        elif kind == "outcomes":
            planned.append(Planned((*base, "force=true"), why=[text]))
    return planned, unavailable


def task_cells(v: ClaimVerdict, by_id: dict[str, Cell], tasks: Sequence[str]) -> list[Planned]:
    """The verdict's evidence cells on each of `tasks` it has no evidence on (a claim about every task)."""
    have = {by_id[i].task for i in v.evidence if i in by_id}
    return [Planned(with_value(base, "task", task), why=[f"{v.id} on {task}"])
            for task in tasks if have and task not in have
            for cid in v.evidence if cid in by_id and (base := overrides_of(by_id[cid].record))]


def decisions(rows: Sequence[ClaimVerdict], cells: Sequence[Cell], tasks: Sequence[str],
              price: Callable[[list[Planned]], None], recorded: Callable[[Planned], bool]) -> list[Decision]:
    """One Decision per verdict row with something to run: an inconclusive row's needs, and any judged
    row's evidence on the `tasks` it lacks; cells shared between rows are planned once and priced."""
    by_id = {c.cell_id: c for c in cells}
    unique: dict[tuple[str, ...], Planned] = {}
    out = []
    for v in rows:
        if v.verdict == NOT_RUN:
            continue
        want, unavailable = need_cells(v, by_id, cells) if v.verdict == INCONCLUSIVE else ([], [])
        mine: list[Planned] = []
        for p in want + task_cells(v, by_id, tasks):
            q = unique.setdefault(tuple(sorted(p.overrides)), p)
            q.serves.add(row_name(v))
            q.why += [w for w in p.why if w not in q.why]
            if all(q is not m for m in mine) and not recorded(q):
                mine.append(q)
        if mine or unavailable:
            out.append(Decision(row_name(v), mine, unavailable))
    price(list(unique.values()))
    return out


def choose(found: Sequence[Decision], cap_seconds: float, jobs: int) -> tuple[list[Planned], list[Decision]]:
    """The cheapest whole decisions first while their cells fit in `cap_seconds` of wall time on `jobs`
    workers; returns (cells to run, decisions left out for the cap)."""
    chosen: dict[int, Planned] = {}
    left_out = []
    for d in sorted((d for d in found if d.cells), key=lambda d: d.seconds):
        extra = [p for p in d.cells if id(p) not in chosen]
        spent = sum(p.seconds for p in chosen.values())
        if (spent + sum(p.seconds for p in extra)) / jobs <= cap_seconds:
            chosen.update({id(p): p for p in extra})
        else:
            left_out.append(d)
    return sorted(chosen.values(), key=lambda p: -p.seconds), left_out


# ------------------------------------------------------------------ plumbing: store, prices, runs

def price_with_priors(planned: list[Planned], cells: Sequence[Cell]) -> None:
    """Prior wall seconds of each planned cell (suite/grid_eta.py), teachers already trained not paid."""
    from suite.grid_eta import grid_prior

    paid = {("teacher", c.task, c.seed, 1.0) for c in cells if c.is_dense_baseline and c.budget == "1x"}
    for p, s in zip(planned, grid_prior([list(p.overrides) for p in planned], None, paid), strict=True):
        p.seconds = s


def recorded_ids(uri: str | None) -> Callable[[Planned], bool]:
    """Is a planned cell's id already FINISHED in the store? (compose + config_hash; unknown: False)"""
    import mlflow

    from suite.config import compose
    from suite.identity import config_hash
    from suite.tracking import finished_run

    if uri:
        mlflow.set_tracking_uri(uri)

    def done(p: Planned) -> bool:
        if "force=true" in p.overrides:
            return False
        try:
            return finished_run("", config_hash(compose([o for o in p.overrides]))) is not None
        except Exception:  # noqa: BLE001 - an override this checkout no longer composes: let the run say so
            return False
    return done


def run_cells(planned: Sequence[Planned], jobs: int) -> int:
    """Run the cells, `jobs` at a time at one thread each (as the grids' parallel launcher); failures counted."""
    failures, running = 0, []
    queue = list(planned)
    while queue or running:
        while queue and len(running) < jobs:
            p = queue.pop(0)
            print(f"[verdicts] run {p.command}", file=sys.stderr, flush=True)
            running.append(subprocess.Popen([sys.executable, "-m", "suite.run", *p.overrides,
                                             f"threads={1 if jobs > 1 else 0}", "progress=false"]))
        time.sleep(2)
        for proc in [r for r in running if r.poll() is not None]:
            running.remove(proc)
            failures += proc.returncode not in (0,)
    return failures


def judge_store(uri: str | None) -> tuple[list[ClaimVerdict], list[Cell]]:
    from suite.report.load import load_store

    store = load_store(uri, environment=False)
    return verdicts(group_cells(store.cells), store.kernel_rows), list(store.cells)


def plan_text(chosen: Sequence[Planned], jobs: int) -> str:
    lines = [f"{len(chosen)} cells, ~{sum(p.seconds for p in chosen) / jobs / 3600:.2f} h on {jobs} workers "
             f"({sum(p.seconds for p in chosen) / 3600:.2f} core-hours at 1 thread each):"]
    lines += [f"  {p.seconds / 60:5.1f} min  {p.command}\n            for {', '.join(sorted(p.serves))}: "
              f"{'; '.join(p.why[:2])}" for p in chosen]
    return "\n".join(lines)


def closing_text(rows: Sequence[ClaimVerdict], left_out: Sequence[Decision], unavailable: Sequence[Decision]) -> str:
    decided = [v for v in rows if v.verdict not in (INCONCLUSIVE, NOT_RUN)]
    lines = [f"{len(decided)}/{len(rows)} claim rows decided"]
    for d in left_out:
        lines.append(f"  {d.row}: deciding it would cost {len(d.cells)} cells, ~{d.seconds / 3600:.2f} core-hours")
    for d in unavailable:
        lines.append(f"  {d.row}: needs what no budget buys: {'; '.join(d.unavailable)}")
    return "\n".join(lines)


def drive(hours: float, tasks: Sequence[str], jobs: int, rounds: int, dry_run: bool, uri: str | None,
          judge: Callable = judge_store, runner: Callable = run_cells, price: Callable | None = None,
          recorded: Callable | None = None, out=print) -> list[ClaimVerdict]:
    """Judge, plan, run, judge again, until decided, stuck or out of budget; returns the last verdicts."""
    budget = hours * 3600
    done = recorded or recorded_ids(uri)
    for r in range(1, rounds + 1):
        rows, cells = judge(uri)
        found = decisions(rows, cells, tasks, price or (lambda ps, cs=cells: price_with_priors(ps, cs)), done)
        chosen, left_out = choose(found, budget, jobs)
        stuck = [d for d in found if d.unavailable and not d.cells]
        if not chosen:
            out(closing_text(rows, left_out, stuck))
            return rows
        out(f"[verdicts] round {r}: " + plan_text(chosen, jobs))
        if dry_run:
            out(closing_text(rows, left_out, stuck))
            return rows
        start = time.monotonic()
        runner(chosen, jobs)
        budget -= (time.monotonic() - start) if recorded is None else sum(p.seconds for p in chosen) / jobs
    rows, _ = judge(uri)
    out(closing_text(rows, [], []))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m suite.verdicts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=4.0, help="wall-clock cap on the cells run (default 4)")
    ap.add_argument("--tasks", default="sst2,mrpc", help="tasks every claim is judged on (default sst2,mrpc)")
    ap.add_argument("--jobs", type=int, default=2, help="cells at a time, one thread each (default 2)")
    ap.add_argument("--rounds", type=int, default=MAX_ROUNDS, help=f"judge-plan-run rounds (default {MAX_ROUNDS})")
    ap.add_argument("--dry-run", action="store_true", help="print the first round's plan and its cost, run nothing")
    ap.add_argument("--tracking-uri", default=None, help="MLflow store (default: MLFLOW_TRACKING_URI or mlflow.db)")
    a = ap.parse_args(argv)
    from suite.paths import tracking_uri

    tasks = [t for t in a.tasks.split(",") if t]
    drive(a.hours, tasks, a.jobs, a.rounds, a.dry_run, a.tracking_uri or tracking_uri())
    return 0


if __name__ == "__main__":
    sys.exit(main())
