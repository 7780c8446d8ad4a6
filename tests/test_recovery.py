"""Recovery tier: each claim's verdict logic on synthetic records (CellRecord, validated), every
path: holds, does not hold, each inconclusive reason (reference at chance, reference still gaining
with budget, gap still closing), not run. `./reproduce.sh test -m recovery`.
"""

from __future__ import annotations

import pytest
from test_report_support import BASE_BYTES, record

from suite.report.claims import load_specs, verdicts
from suite.report.curves import knee_of
from suite.report.records import Cell, group_cells

pytestmark = pytest.mark.recovery

GMP = dict(sp="gmp", distill="logits")


def judge(claim: str, recs: list[dict], kernels=()) -> list:
    return [v for v in verdicts(group_cells([Cell(r) for r in recs]), kernels) if v.id == claim]


def one(claim: str, recs: list[dict], kernels=()):
    rows = judge(claim, recs, kernels)
    assert rows, claim
    return rows[0]


def dense_at(budgets: dict[str, float], task: str = "sst2", **kw) -> list[dict]:
    steps = {"1x": 63, "2x": 126, "4x": 252}
    return [record(task=task, budget=b, steps=steps[b], primary=p, **kw) for b, p in budgets.items()]


def converged(primary: float, **kw) -> dict:
    """A 2x twin of a dense reference gaining 0.2 pt: it shows the reference converged."""
    return record(budget="2x", steps=126, primary=primary + 0.2, **kw)


def cell_at(budgets: dict[str, float], task: str = "sst2", **kw) -> list[dict]:
    steps = {"1x": 63, "2x": 126, "4x": 252}
    return [record(task=task, budget=b, steps=steps[b], primary=p, **kw) for b, p in budgets.items()]


# ------------------------------------------------------------------ the shared inconclusive paths (PO1)

def test_po1_holds_on_a_converged_dense():
    v = one("PO1", dense_at({"1x": 90.0, "2x": 90.5}) + cell_at({"1x": 89.0, "2x": 89.0}, target=0.9, **GMP))
    assert v.verdict == "holds" and v.at.startswith("paper")
    assert "2x (126 steps x 32, 2000 train / 500 eval examples)" in v.budget and v.model == "minilm"
    assert len(v.evidence) == 2 and v.paper_number.startswith("BERT-Base") and "-1.50" in v.ours


def test_po1_fails_when_dense_converged_and_gap_stays():
    v = one("PO1", dense_at({"1x": 90.0, "2x": 90.5}) + cell_at({"1x": 80.0, "2x": 80.2}, target=0.85, **GMP))
    assert v.verdict == "does not hold" and "-10.30" in v.reason


def test_po1_inconclusive_when_dense_at_chance():
    v = one("PO1", [record(primary=51.0), record(primary=50.0, target=0.9, **GMP)])
    assert v.verdict == "inconclusive" and "reference at chance" in v.reason
    cola = one("PO1", [record(task="cola", primary=0.0), record(task="cola", primary=0.0, target=0.9, **GMP)])
    assert cola.verdict == "inconclusive"
    # the eval subset's own majority rate (recorded) beats the dev set's: 56.25 on 32 examples is chance
    small = [record(primary=56.25, eval_primary_chance=56.25), record(primary=56.25, target=0.9, **GMP)]
    assert one("PO1", small).verdict == "inconclusive"


def test_po1_inconclusive_when_dense_still_gains_from_1x_to_2x():
    v = one("PO1", dense_at({"1x": 80.0, "2x": 84.0}) + cell_at({"1x": 70.0, "2x": 72.0}, target=0.9, **GMP))
    assert v.verdict == "inconclusive" and "not converged" in v.reason and "+4.00" in v.reason


def test_po1_inconclusive_when_the_gap_is_still_closing():
    recs = dense_at({"1x": 85.0, "2x": 85.5, "4x": 85.6}) + cell_at({"1x": 70.0, "2x": 75.0, "4x": 79.0},
                                                                      target=0.9, **GMP)
    v = one("PO1", recs)
    assert v.verdict == "inconclusive" and "gap still closing" in v.reason
    assert "4x (252 steps" in v.budget  # judged at the largest budget


def test_po1_judged_at_the_largest_budget_across_experiments():
    """The 1x cell of a curve grid and the budget grid's 1x/2x/4x twins are one config, judged once at 4x."""
    recs = dense_at({"1x": 85.0, "2x": 85.5, "4x": 85.6}) + [record("curves", target=0.9, primary=70.0, **GMP)]
    recs += [record("budget", budget=b, steps=s, target=0.9, primary=p, **GMP)
             for b, s, p in (("1x", 63, 70.0), ("2x", 126, 83.0), ("4x", 252, 84.5))]
    v = one("PO1", recs)
    assert v.verdict == "holds" and "1/1" in v.reason


def test_po1_failure_without_a_budget_twin_is_inconclusive():
    v = one("PO1", [record(primary=90.0), record(primary=80.0, target=0.9, **GMP)])
    assert v.verdict == "inconclusive" and "no budget twin" in v.reason and "1x only" in v.reason
    v = one("PO1", [record(primary=90.0), converged(90.0), record(primary=80.0, target=0.9, **GMP)])
    assert v.verdict == "does not hold"  # the dense is shown converged: the 1x failure stands


def test_po1_not_run_without_cells():
    assert one("PO1", [record(primary=90.0)]).verdict == "not run"


def test_po1_and_s3_at_the_models_own_knee():
    recs = [record(primary=85.0, seed=s) for s in (42, 43)]
    recs += [record(target=t, primary=p + d, seed=s, **GMP) for s, d in ((42, 0.0), (43, 0.4))
             for t, p in ((0.5, 84.8), (0.7, 84.0), (0.8, 83.2), (0.9, 78.0), (0.95, 70.0))]
    rows = judge("PO1", recs + [converged(85.0, seed=42)])
    knee_row = next(r for r in rows if r.at.startswith("knee"))
    assert knee_row.verdict == "holds" and knee_row.at == "knee on minilm: 81%"  # 0.8 + 0.1 x 0.4 / 5.2
    assert "sst2 gmp/logits @1x: 81%" in knee_row.reason
    assert next(r for r in rows if r.at.startswith("paper")).verdict == "does not hold"
    unchecked = judge("PO1", recs)  # the dense has no budget twin: neither the knee nor the 90% is decided
    assert [r.verdict for r in unchecked] == ["inconclusive", "inconclusive"]
    assert any(n["kind"] == "budget" and n["factor"] == 2.0 for n in unchecked[1].needs)
    s3 = judge("S3", recs + [converged(85.0, seed=42)])
    assert [r.verdict for r in s3] == ["does not hold", "holds"]  # 95% is past this model's knee
    # no point within 2 pt: the knee fails (dense converged) or is unchecked; dense at chance: inconclusive
    low = [record(primary=85.0)] + [record(target=t, primary=70.0, **GMP) for t in (0.5, 0.9)]
    assert next(r for r in judge("PO1", low) if r.at == "knee").verdict == "inconclusive"
    assert next(r for r in judge("PO1", low + [converged(85.0)]) if r.at == "knee").verdict == "does not hold"
    chance = [record(primary=51.0)] + [record(target=t, primary=50.0, **GMP) for t in (0.5, 0.9)]
    assert next(r for r in judge("PO1", chance) if r.at == "knee").verdict == "inconclusive"


def test_knee_interpolates_and_flags_beyond_the_curve():
    assert knee_of([(0.5, -0.5), (0.9, -3.0)], 2.0) == (pytest.approx(0.5 + 0.4 * 1.5 / 2.5), True)
    assert knee_of([(0.5, -0.5), (0.9, -1.0)], 2.0) == (0.9, False)
    assert knee_of([(0.5, -3.0)], 1.0)[0] == pytest.approx(0.5 / 3)


# ------------------------------------------------------------------ Prune OFA PO2, PO3

def test_po2_twin_paths():
    fp32 = record(target=0.9, primary=89.0, **GMP)
    ok = record(target=0.9, quant="qat", wb=8, ab=8, primary=88.5, **GMP)
    assert one("PO2", [fp32, converged(89.0, target=0.9, **GMP), ok]).verdict == "holds"
    assert one("PO2", [fp32, ok]).verdict == "inconclusive"  # a pass needs a converged twin too
    qat = record(target=0.9, quant="qat", wb=8, ab=8, primary=86.0, **GMP)
    assert one("PO2", [fp32, qat, converged(89.0, target=0.9, **GMP)]).verdict == "does not hold"
    assert one("PO2", [fp32, qat]).verdict == "inconclusive"  # the fp32 twin's convergence unchecked
    chance = record(target=0.9, primary=50.0, **GMP)
    assert one("PO2", [chance, record(target=0.9, quant="qat", wb=8, ab=8, primary=50.0, **GMP)]).verdict \
        == "inconclusive"
    assert one("PO2", [fp32]).verdict == "not run"


def test_po3_relative_loss_paths():
    qat = dict(target=0.9, quant="qat", wb=8, ab=8, **GMP)
    assert one("PO3", [record(primary=90.0), converged(90.0), record(primary=89.5, **qat)]).verdict == "holds"
    close = one("PO3", [record(primary=90.0), converged(90.0), record(primary=89.2, **qat)])
    assert close.verdict == "inconclusive" and "straddles -0.90" in close.reason  # -0.8 inside its interval
    assert one("PO3", [record(primary=90.0), converged(90.0), record(primary=88.0, **qat)]).verdict == "does not hold"
    mrpc = one("PO3", [record(task="mrpc", primary=69.0), record(task="mrpc", primary=68.4, **qat)])
    assert mrpc.verdict == "inconclusive"  # MRPC dense at the majority class (68.38)


# ------------------------------------------------------------------ IntelCaffe

def test_ic1_paths():
    ptq = dict(quant="ptq", wb=8, ab=8)
    assert one("IC1", [record(primary=90.0), record(primary=89.5, **ptq)]).verdict == "holds"
    assert one("IC1", [record(primary=90.0), record(primary=88.0, **ptq)]).verdict == "does not hold"
    assert one("IC1", [record(primary=52.0), record(primary=50.0, **ptq)]).verdict == "inconclusive"
    assert one("IC1", [record(primary=90.0)]).verdict == "not run"


def test_ic2_latency_and_kernel_bench_paths():
    def ptq(ms):
        return record(quant="ptq", wb=8, ab=8, primary=89.0, latency={"torch_fp32": 20.0, "torch_int8_onednn": ms})

    assert one("IC2", [record(), ptq(10.0)]).verdict == "holds"
    assert one("IC2", [record(), ptq(18.0)]).verdict == "does not hold"
    rows = [{"backend": "torch_int8_fbgemm", "speedup_vs_fp32": 2.5, "k": 768.0, "n": 768.0, "m": 128.0}]
    bench = one("IC2", [], rows)
    assert bench.verdict == "holds" and bench.profile == "kernel bench" and "2.50x" in bench.reason
    assert one("IC2", []).verdict == "not run"


def test_ic3_spread_paths():
    def cal(name, acc, base=90.0):
        return record(quant="ptq", wb=8, ab=8, primary=acc,
                      variant={"quant.calibration": name} if name != "maxabs" else None)

    assert one("IC3", [record(), cal("maxabs", 89.0), cal("entropy", 87.0)]).verdict == "holds"
    assert one("IC3", [record(), cal("maxabs", 89.0), cal("entropy", 88.9)]).verdict == "does not hold"
    assert one("IC3", [record(primary=51.0), cal("maxabs", 50.0), cal("entropy", 52.0)]).verdict == "inconclusive"
    assert one("IC3", [record(), cal("maxabs", 89.0)]).verdict == "not run"


# ------------------------------------------------------------------ IBM Deep Compression

NM = dict(sp="nm", target=0.5, pattern="2:4", quant="qat", wb=4, ab=8)


def test_dc1_paths_and_ablations_left_out():
    assert one("DC1", [record(primary=90.0), converged(90.0), record(primary=89.5, **NM)]).verdict == "holds"
    assert one("DC1", [record(primary=90.0), converged(90.0), record(primary=85.0, **NM)]).verdict == "does not hold"
    abl = record(primary=60.0, variant={"quant.zero_preserving": False}, ablated=["quant.zero_preserving"], **NM)
    v = one("DC1", [record(primary=90.0), converged(90.0), record(primary=89.5, **NM), abl])
    assert v.verdict == "holds" and "1/1" in v.reason
    assert one("DC1", [record(primary=52.0), record(primary=50.0, **NM)]).verdict == "inconclusive"


def test_dc2_paths():
    assert one("DC2", [record(primary=89.0, **NM)]).verdict == "holds"
    assert one("DC2", [record(primary=89.0, after_quant=0.45, **NM)]).verdict == "does not hold"
    leak = record(primary=80.0, after_quant=0.1, variant={"quant.zero_preserving": False},
                  ablated=["quant.zero_preserving"], **NM)
    assert one("DC2", [record(primary=89.0, **NM), leak]).verdict == "holds"  # the ablation is not judged
    assert one("DC2", [record()]).verdict == "not run"


def test_dc3_ablation_paths():
    full = record(primary=89.5, **NM)
    off = dict(variant={"quant.zero_preserving": False}, ablated=["quant.zero_preserving"])

    def ablate(switch, value, acc):
        return record(primary=acc, variant={switch: value}, ablated=[switch], **NM)

    three = [ablate("quant.zero_preserving", False, 88.0), ablate("quant.scale_init", "default", 87.0),
             ablate("quant.dropout_schedule", "none", 88.5)]
    assert one("DC3", [full, converged(89.5, **NM), *three]).verdict == "holds"
    one_of_three = one("DC3", [full, converged(89.5, **NM), three[0]])
    assert one_of_three.verdict == "inconclusive" and "not ablated: quant.dropout_schedule, quant.scale_init" \
        in one_of_three.reason  # a technique never ablated is not shown to contribute
    assert one("DC3", [full, *three]).verdict == "inconclusive"  # the full recipe's convergence unchecked
    nodrop = record(primary=89.9, variant={"quant.dropout_schedule": "none"}, ablated=["quant.dropout_schedule"], **NM)
    v = one("DC3", [full, nodrop, converged(89.5, **NM)])
    assert v.verdict == "does not hold" and "quant.dropout_schedule: full - ablated -0.40 pt" in v.reason
    chance = record(primary=50.0, **NM)
    assert one("DC3", [chance, record(primary=50.5, **off, **NM)]).verdict == "inconclusive"
    # a variant that is no technique switch (another calibration) is not an ablation
    other = record(primary=80.0, variant={"quant.calibration": "maxabs"}, **NM)
    assert one("DC3", [full, other]).verdict == "not run"
    ptq = [record(quant="ptq", wb=8, ab=8, primary=a, variant={"quant.calibration": c} if c else None)
           for c, a in ((None, 89.0), ("entropy", 86.0))]
    assert one("DC3", ptq).verdict == "not run"  # calibration is IC3's business


# ------------------------------------------------------------------ SparseBERT / S4

HALF = dict(model="minilm (1/2 layers)", bytes_dense=BASE_BYTES / 2, distill="hidden")
TENTH = dict(model="minilm (1/6 layers) (ffn 614)", bytes_dense=BASE_BYTES / 10, distill="hidden")


def test_s1_at_two_sparsities():
    recs = [record(primary=90.0), record(sp="gmp", target=0.5, distill="hidden", primary=89.0),
            record(sp="gmp", target=0.9, distill="hidden", primary=84.0), record(primary=86.0, **HALF),
            converged(86.0, **HALF), record(primary=85.0, **TENTH), converged(85.0, **TENTH)]
    rows = judge("S1", recs)
    assert [(r.at, r.verdict) for r in rows] == [("gmp 50% vs minilm (1/2 layers)", "holds"),
                                                 ("gmp 90% vs minilm (1/6 layers) (ffn 614)", "does not hold")]
    twins = [record(primary=85.0, **TENTH), converged(85.0, **TENTH), record(sp="gmp", target=0.9, primary=80.0),
             record(sp="gmp", target=0.9, primary=86.0, budget="2x", steps=126)]
    v = one("S1", twins)
    assert v.verdict == "holds" and "1/1" in v.reason and "126 steps" in v.budget  # judged at the largest budget
    chance = [record(sp="gmp", target=0.5, distill="hidden", primary=52.0), record(primary=51.0, **HALF)]
    assert one("S1", chance).verdict == "inconclusive"
    assert one("S1", [record(primary=86.0, **HALF)]).verdict == "not run"


def test_s2_from_measured_latency_pairs():
    def sparse(acc, ms, **kw):
        return record(sp="gmp", target=0.9, distill="hidden", primary=acc, latency={"sparq": ms}, **kw)

    def small(acc, **kw):
        return record(primary=acc, latency={"torch_fp32": 10.0}, **{**HALF, **kw})

    assert one("S2", [sparse(88.0, 10.5), small(85.0), small(85.2, budget="2x", steps=126)]).verdict == "holds"
    assert one("S2", [sparse(88.0, 10.5), small(85.0)]).verdict == "inconclusive"  # a pass needs convergence too
    assert one("S2", [sparse(84.0, 10.5), small(85.0), small(85.2, budget="2x", steps=126)]).verdict \
        == "does not hold"
    assert one("S2", [sparse(84.0, 10.5), small(85.0)]).verdict == "inconclusive"  # small model unchecked
    slow = one("S2", [sparse(88.0, 30.0), small(85.0)])
    assert slow.verdict == "does not hold" and "30.00 ms" in slow.reason
    gaining = [sparse(80.0, 10.0, budget="2x", steps=126), small(84.0, budget="1x"), small(86.0, budget="2x",
                                                                                           steps=126)]
    assert one("S2", gaining).verdict == "inconclusive"  # the small dense model still gains 2 pt
    assert one("S2", [small(85.0)]).verdict == "not run"


def test_latencies_timed_on_a_busy_machine_are_no_evidence():
    """A cell timed while the CPUs were busy (latency.quiet false) is left out of S2 and IC2, says
    so, and the board shows its latency struck out, outside the latency views."""
    from suite.report.views import rows

    def busy(r):
        r["latency"].update(quiet=False, cpu_busy=0.8)
        return r

    fast = record(sp="gmp", target=0.9, distill="hidden", primary=88.0, latency={"sparq": 10.5})
    small = record(primary=85.0, latency={"torch_fp32": 10.0}, **HALF)
    assert one("S2", [fast, small, converged(85.0, **HALF)]).verdict == "holds"
    left_out = one("S2", [busy(fast), small])
    assert left_out.verdict == "not run" and "1 cell timed on a busy machine left out" in left_out.reason
    ptq = record(quant="ptq", wb=8, ab=8, primary=89.0, latency={"torch_fp32": 20.0, "torch_int8_onednn": 10.0})
    assert one("IC2", [record(), busy(ptq)]).verdict == "not run"
    board = {r.cell_id: r for r in rows([busy(dict(fast, cell_id="b")), dict(small, cell_id="q")])}
    assert board["b"].latency is None and board["b"].latency_busy == 10.5 and board["b"].cpu_busy == 0.8
    assert board["q"].latency == 10.0 and board["q"].latency_busy is None


# ------------------------------------------------------------------ the claims are data

def test_every_claim_is_judged_and_says_what_it_rests_on():
    specs = load_specs()
    assert {s.id for s in specs} == {"PO1", "PO2", "PO3", "IC1", "IC2", "IC3", "DC1", "DC2", "DC3", "S1", "S2", "S3"}
    assert all(s.reference and s.describe for s in specs)
    rows = verdicts(group_cells([Cell(record(primary=90.0))]))
    assert {r.id for r in rows} == {s.id for s in specs} and all(r.verdict == "not run" for r in rows)
    assert set(rows[0].to_dict()) >= {"id", "text", "verdict", "reason", "rule", "budget", "model", "evidence",
                                      "paper_number", "ours"}


def test_a_bad_claim_yaml_is_one_clear_error(tmp_path):
    (tmp_path / "x.yaml").write_text("paper: x\ntitle: X\nclaims:\n  - {id: X1, text: t, rule: nope, describe: d}\n")
    with pytest.raises(ValueError, match=r"x.yaml: claims.0.rule: .*unknown rule 'nope'; allowed: .*within_dense"):
        load_specs(tmp_path)
    (tmp_path / "x.yaml").write_text("paper: x\ntitle: X\nclaims:\n  - {id: X1, text: t, rule: twin, describe: d}\n"
                                     "  - {id: X1, text: t, rule: twin, describe: d}\n")
    with pytest.raises(ValueError, match="claim id X1 defined twice"):
        load_specs(tmp_path)
    (tmp_path / "x.yaml").write_text("paper: x\ntitle: X\nclaims:\n  - {id: X1, text: a: b}\n")
    with pytest.raises(ValueError, match="x.yaml: not valid YAML"):
        load_specs(tmp_path)


# ------------------------------------------------------------------ end to end on a tiny random model

@pytest.mark.slow
def test_verdicts_rest_on_the_records_real_cells_write(run_cell, smoke_overrides):
    """Two real smoke cells (dense, 90% gmp + KD) on the tiny random model: the report reads their
    result.json back, and PO1's verdict names exactly those cells, their budget and their model."""
    import os

    from suite.report.load import load_store

    dense = run_cell(smoke_overrides + ["task=sst2", "seed=3"])
    gmp = run_cell(smoke_overrides + ["task=sst2", "seed=3", "+experiment/arm/prune_ofa=gmp90_kd"])
    assert {dense.status, gmp.status} <= {"FINISHED", "SKIPPED"}
    store = load_store(os.environ["MLFLOW_TRACKING_URI"])
    mine = [c for c in store.cells if c.cell_id in (dense.cell_id, gmp.cell_id)]
    assert len(mine) == 2 and {c.profile for c in mine} == {"smoke"}
    rows = [r for r in verdicts(group_cells(mine)) if r.id == "PO1" and r.at.startswith("paper")]
    assert len(rows) == 1 and rows[0].verdict in ("holds", "does not hold", "inconclusive")
    assert set(rows[0].evidence) == {dense.cell_id, gmp.cell_id}
    steps = mine[0].steps
    assert steps and f"{steps} steps x" in rows[0].budget and rows[0].model == mine[0].model
