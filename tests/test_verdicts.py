"""The verdict driver (suite/verdicts.py) on a toy store: it plans exactly the cells a verdict needs,
runs them (here: a fake runner that records what the cell would give), and judges again."""

from __future__ import annotations

from test_report_support import record

from suite.report.claims import verdicts
from suite.report.records import Cell, group_cells
from suite.verdicts import drive, overrides_of, with_value

NM = dict(sp="nm", target=0.5, pattern="2:4", quant="qat", wb=4, ab=8)
ARM = {"dense": {}, "nm24_qat4": NM}
RESULT = {("dense", 1): 90.0, ("dense", 2): 90.1, ("nm24_qat4", 1): 89.8, ("nm24_qat4", 2): 89.9}


def cell(arm: str, budget: int = 1, seed: int = 42, task: str = "sst2") -> dict:
    """A record as the cell `python -m suite.run task=T +experiment/arm/ibm_deep_compression=ARM` would give."""
    rec = record("ibm_deep_compression", task=task, seed=seed, budget=f"{budget}x", steps=63 * budget,
                 primary=RESULT[(arm, budget)], **ARM[arm])
    ovs = [f"task={task}", f"+experiment/arm/ibm_deep_compression={arm}", f"seed={seed}",
           "+experiment=ibm_deep_compression"] + ([f"profile.budget={budget}"] if budget != 1 else [])
    rec["command"] = "python -m suite.run " + " ".join(ovs)
    return rec


class ToyStore:
    def __init__(self, records):
        self.records, self.ran = list(records), []

    def judge(self, uri):
        cells = [Cell(r) for r in self.records]
        return verdicts(group_cells(cells)), cells

    def run(self, planned, jobs):
        for p in planned:
            kv = dict(o.lstrip("+").split("=", 1) for o in p.overrides)
            self.ran.append(p.overrides)
            self.records.append(cell(kv["experiment/arm/ibm_deep_compression"], int(float(kv.get("profile.budget", 1))),
                                     int(kv["seed"]), kv["task"]))

    def recorded(self, p):
        return any(tuple(sorted(p.overrides)) == tuple(sorted(r)) for r in self.ran)


def _drive(store, hours=10.0, tasks=(), lines=None):
    out = lines if lines is not None else []
    rows = drive(hours, tasks, 2, 4, False, None, judge=store.judge, runner=store.run,
                 price=lambda ps: [setattr(p, "seconds", 600.0) for p in ps], recorded=store.recorded, out=out.append)
    return {r.id: r.verdict for r in rows}, out


def test_a_missing_budget_twin_plans_exactly_that_cell_and_its_dense_twin_then_decides():
    store = ToyStore([cell("dense"), cell("nm24_qat4")])
    before = {r.id: r.verdict for r in store.judge(None)[0]}
    assert before["DC1"] == "inconclusive" and before["DC2"] == "holds"
    after, lines = _drive(store)
    planned = {tuple(sorted(o)) for o in store.ran}
    assert planned == {tuple(sorted(overrides_of(cell(a, 2)))) for a in ("dense", "nm24_qat4")}
    assert after["DC1"] == "holds" and after["DC2"] == "holds"  # decided; DC2 needed nothing and got nothing
    assert "DC1" in lines[0] and "profile.budget=2" in lines[0]


def test_a_cap_below_the_cells_estimate_plans_nothing_and_says_what_it_would_cost():
    store = ToyStore([cell("dense"), cell("nm24_qat4")])
    verdict, lines = _drive(store, hours=0.1)  # 2 x 600 s on 2 workers = 10 min > 6 min
    assert store.ran == [] and verdict["DC1"] == "inconclusive"
    assert "DC1 paper's scale: deciding it would cost 2 cells, ~0.33 core-hours" in lines[-1]


def test_a_claim_judged_on_one_task_is_planned_on_the_other():
    store = ToyStore([cell("dense"), cell("nm24_qat4"), cell("dense", 2), cell("nm24_qat4", 2)])
    assert {r.id: r.verdict for r in store.judge(None)[0]}["DC1"] == "holds"
    _drive(store, tasks=("sst2", "mrpc"), hours=0.0 + 600 * 2 / 3600)
    assert {dict(o.split("=", 1) for o in r)["task"] for r in store.ran} == {"mrpc"}


def test_overrides_round_trip():
    rec = cell("dense")
    ovs = overrides_of(rec)
    assert ovs[0] == "task=sst2" and with_value(ovs, "seed", "7")[-1] == "seed=7"
    assert sum(o.startswith("seed=") for o in with_value(ovs, "seed", "7")) == 1
