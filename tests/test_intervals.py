"""Verdicts on intervals: the paired bootstrap (suite/report/intervals.py) and the one symmetric rule
(suite/report/judge.py), on synthetic per-example outcomes."""

from __future__ import annotations

import pytest
from test_recovery import converged, one
from test_report_support import BASE_BYTES, record

from suite.report.intervals import delta
from suite.report.records import Cell, group_cells

NM = dict(sp="nm", target=0.5, pattern="2:4", quant="qat", wb=4, ab=8)


def _pair(a: dict, b: dict):
    groups = group_cells([Cell(a), Cell(b)])
    return next(g for g in groups if g.first.cell_id == a["cell_id"]), \
        next(g for g in groups if g.first.cell_id == b["cell_id"])


def test_a_small_delta_with_a_wide_interval_is_inconclusive_at_a_one_point_line():
    # 200 examples, the two models right on different examples: -0.5 pt with an interval of several points
    dense, cell = record(primary=85.5, n_eval=200), record(primary=85.0, n_eval=200, order_seed=7, **NM)
    iv = delta(*reversed(_pair(dense, cell)))
    assert iv.value == pytest.approx(-0.5) and iv.half_width > 2.5
    v = one("DC1", [dense, converged(85.5, n_eval=200), cell])
    assert v.verdict == "inconclusive" and "straddles -1.00" in v.reason
    assert {n["kind"] for n in v.needs} == {"seeds"}  # what would decide it, as data


def test_a_clear_loss_at_a_converged_reference_does_not_hold():
    v = one("DC1", [record(primary=90.0), converged(90.0), record(primary=87.0, **NM)])
    assert v.verdict == "does not hold" and "-3.00 pt [-3.4" in v.reason


def test_a_pass_needs_a_converged_reference_unless_the_claim_says_otherwise():
    ptq = dict(quant="ptq", wb=8, ab=8)
    unconverged = [record(primary=85.0), record(budget="2x", steps=126, primary=88.0), record(primary=84.9, **ptq)]
    assert one("DC1", [record(primary=85.0), record(primary=84.9, **NM)]).verdict == "inconclusive"  # no twin
    # IC1 says converged: false (PTQ calibrates the fine-tune itself): judged even though the dense still gains
    ic1 = one("IC1", unconverged)
    assert ic1.verdict == "holds" and "not converged" not in ic1.reason
    po1 = one("PO1", [*unconverged[:2], record(primary=84.9, sp="gmp", target=0.9, distill="logits")])
    assert po1.verdict == "inconclusive" and "not converged" in po1.reason
    assert any(n["kind"] == "budget" and n["factor"] == 4.0 for n in po1.needs)  # the next doubling


def test_pairing_narrows_the_interval_when_two_cells_agree_on_most_examples():
    a, b = record(primary=88.0, n_eval=872), record(primary=87.0, n_eval=872, **NM)  # same order: nested
    ga, gb = _pair(a, b)
    paired, unpaired = delta(gb, ga), delta(gb, ga, paired=False)
    assert paired.paired and not unpaired.paired
    assert paired.value == unpaired.value == pytest.approx(-1.0)
    assert paired.half_width < unpaired.half_width / 3
    assert paired.lo <= paired.value <= paired.hi


def test_the_interval_is_deterministic_and_resamples_seeds():
    seeds = [record(seed=s, primary=p) for s, p in ((1, 88.0), (2, 90.0), (3, 92.0))]
    cells = [record(seed=s, primary=p, **NM) for s, p in ((1, 87.0), (2, 89.0), (3, 91.0))]
    groups = group_cells([Cell(r) for r in seeds + cells])
    dense = next(g for g in groups if g.sparsity_method == "dense")
    nm = next(g for g in groups if g.sparsity_method == "nm")
    first, again = delta(nm, dense), delta(nm, dense)
    assert first == again  # seeded from the cells' ids
    # the same seeds on both sides are resampled jointly: the seed-to-seed swing cancels in the pair
    assert first.value == pytest.approx(-1.0) and first.hi - first.lo < 1.5


def test_no_outcomes_no_interval_and_the_need_says_so():
    v = one("DC1", [record(primary=90.0, n_eval=None), converged(90.0, n_eval=None),
                    record(primary=89.8, n_eval=None, **NM)])
    assert v.verdict == "inconclusive" and "no per-example outcomes" in v.reason
    assert {n["kind"] for n in v.needs} == {"outcomes"}


# ------------------------------------------------------------------ the defects of the point-estimate judge

def test_one_gain_number_per_model_whichever_claim_quotes_it():
    from test_recovery import judge

    dense = [record("prune_ofa", primary=85.0), record("sparsebert_s4", primary=86.0),
             record("budget_curves", budget="2x", steps=126, primary=88.0)]
    cells = [record("prune_ofa", sp="gmp", target=0.9, distill="logits", primary=84.0),
             record("sparsebert_s4", sp="gmp", target=0.95, distill="logits", primary=84.0)]
    po1, s3 = one("PO1", dense + cells), judge("S3", dense + cells)[0]
    assert "dense 1x -> 2x: +2.50 pt" in po1.reason and "dense 1x -> 2x: +2.50 pt" in s3.reason


def test_s2_prints_the_pairs_it_judges_at_equal_latency():
    def sparse(acc, ms, target=0.9):
        return record(sp="gmp", target=target, distill="hidden", primary=acc, latency={"sparq": ms})

    half = dict(model="minilm (1/2 layers)", bytes_dense=BASE_BYTES / 2, distill="hidden")
    small = [record(primary=85.0, latency={"torch_fp32": 10.0}, **half), converged(85.0, **half)]
    v = one("S2", [sparse(88.0, 10.5), sparse(88.5, 36.3, target=0.5), *small])
    assert v.verdict == "holds" and "equal-latency pairs:" in v.reason
    assert "10.50 ms vs" in v.reason and "(1.05x)" in v.reason and "36.30" not in v.reason


def test_qat_cells_are_judged_against_a_reference_of_the_same_optimizer_steps():
    from suite.report.records import baseline_for

    recs = [record(primary=85.0), record("budget_curves", budget="2x", steps=126, primary=87.0),
            record(sp="gmp", target=0.9, quant="qat", wb=8, ab=8, steps=126, primary=86.0)]
    groups = group_cells([Cell(r) for r in recs])
    qat = next(g for g in groups if g.quant_method == "qat")
    assert baseline_for(qat, groups).steps == 126  # the two-phase QAT cell against the 126-step dense
    fp32_twins = [record(sp="gmp", target=0.9, primary=84.0),
                  record("budget_curves", sp="gmp", target=0.9, budget="2x", steps=126, primary=86.2)]
    v = one("PO2", [*fp32_twins, recs[2], record("budget_curves", sp="gmp", target=0.9, budget="4x", steps=252,
                                                  primary=86.3)])
    assert "126 steps" in v.budget and "-0.20 pt" in v.reason  # 86.0 vs the 126-step twin, not +2.0 vs 63


def test_the_ibm_grid_runs_each_ablation_of_dc3():
    import yaml

    from suite.paths import ROOT

    grid = yaml.safe_load((ROOT / "conf/experiment/ibm_deep_compression.yaml").read_text())
    arms = grid["hydra"]["sweeper"]["params"]["+experiment/arm/ibm_deep_compression"].split(",")
    assert {"nm24_qat4", "nm24_qat4_nozp", "nm24_qat4_noinit", "nm24_qat4_nodrop"} <= {a.strip() for a in arms}


def test_ic2_reads_the_latency_stage_interval_over_rounds():
    def ptq(lo, med, hi):
        rec = record(quant="ptq", wb=8, ab=8, primary=89.0)
        rec["latency_stage"] = {"b1_s128/sparq_vs_torch_fp32": {"median": med, "lo": lo, "hi": hi, "n": 9,
                                                                "cpu_model": "Test CPU", "kernel_path": "avx2"}}
        return rec

    held = one("IC2", [record(), ptq(1.6, 1.8, 2.0)])
    assert held.verdict == "holds" and "1.80x [1.60, 2.00]" in held.reason and "avx2" in held.reason
    assert one("IC2", [record(), ptq(1.0, 1.1, 1.2)]).verdict == "does not hold"
    assert one("IC2", [record(), ptq(1.2, 1.35, 1.5)]).verdict == "inconclusive"  # straddles 1.3
