"""suite.report: result.json records from MLflow -> groups -> tables, curves, claims, plots."""

from __future__ import annotations

import math
import re

import pytest
from test_report_support import (
    EXPECTED,
    KERNEL_CSV,
    MALICIOUS,
    RECORDS,
    expected_primaries,
    record,
    shared_store,
)

from suite.report.load import kernel_sparsity, load_store, parse_kernel_csv
from suite.report.plots import kernel_series, pareto_front
from suite.report.records import Cell, baseline_for, budget_siblings, group_cells
from suite.report.references import REFERENCES, find_reference


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    return shared_store(tmp_path_factory)


@pytest.fixture(scope="module")
def store(store_uri):
    return load_store(store_uri)


@pytest.fixture(scope="module")
def built(store_uri, tmp_path_factory):
    from suite.report import build

    out = tmp_path_factory.mktemp("results")
    build(out, store_uri)
    return out


# ------------------------------------------------------------------ pure pieces

def test_pareto_front_keeps_only_undominated_points():
    pts = [(1.0, 90.0), (4.0, 89.0), (2.0, 85.0), (8.0, 80.0), (8.0, 79.0), (float("nan"), 99.0)]
    assert pareto_front(pts) == [0, 1, 3]


def test_kernel_sparsity_parsing():
    assert kernel_sparsity("0.9") == pytest.approx(0.9)
    assert kernel_sparsity("2:4") == pytest.approx(0.5)
    assert kernel_sparsity("90%") == pytest.approx(0.9)
    assert kernel_sparsity("dense") == 0.0
    series = kernel_series(parse_kernel_csv(KERNEL_CSV))
    assert series["sparq_csr (unstructured)"] == [(0.5, pytest.approx(1.6667)), (0.9, pytest.approx(4.0))]
    assert series["torch_fp32"] == [(0.9, 1.0)]


def test_reference_lookup_by_the_records_pattern_names_the_other_model():
    match = find_reference("prune_ofa", "minilm", "sst2", "unstructured", 0.9, 32)
    assert match and match.ref.metrics == {"accuracy": 90.88} and not match.exact_model
    assert find_reference("prune_ofa", "bert_large", "sst2", "unstructured", 0.9, 32).ref.metrics == {"accuracy": 92.95}
    assert find_reference("ibm_deep_compression", "minilm", "sst2", "2:4", 0.5, 32).ref.metrics == {"accuracy": 91.3}
    assert find_reference("prune_ofa", "minilm", "sst2", "unstructured", 0.7, 32) is None  # no guess
    assert all(r.source for r in REFERENCES)


def test_groups_average_over_seeds_and_carry_the_records_variant():
    recs = [record(seed=1, primary=80.0), record(seed=2, primary=82.0),
            record(quant="ptq", wb=8, ab=8, primary=70.0),
            record(quant="ptq", wb=8, ab=8, primary=71.0, variant={"quant.calibration": "entropy"})]
    groups = group_cells([Cell(r) for r in recs])
    dense = [g for g in groups if g.quant_method == "fp32"]
    assert len(dense) == 1 and dense[0].mean() == pytest.approx(81.0) and dense[0].std() == pytest.approx(math.sqrt(2))
    assert sorted(g.variant for g in groups if g.quant_method == "ptq") == ["", "quant.calibration=entropy"]


def test_recipes_are_rows_and_get_their_own_dense_baseline():
    recs = [record(primary=80.0, train_examples=2000), record(primary=85.0, train_examples=8000, steps=250),
            record(sp="gmp", target=0.9, primary=60.0, train_examples=2000),
            record(sp="gmp", target=0.9, primary=70.0, train_examples=8000, steps=250)]
    groups = group_cells([Cell(r) for r in recs])
    assert len(groups) == 4 and all(len(g.cells) == 1 for g in groups)  # not merged as "seeds"
    for g in groups:
        assert baseline_for(g, groups).train_examples == g.train_examples


def test_budget_twins_span_experiments_and_pick_their_own_dense():
    recs = [record("a", budget=b, steps=s, primary=p) for b, s, p in (("1x", 63, 80.0), ("2x", 126, 84.0))]
    recs += [record("b", budget="4x", steps=252, primary=85.0), record("b", budget="2x", steps=126, primary=84.2,
                                                                       sp="gmp", target=0.9)]
    groups = group_cells([Cell(r) for r in recs])
    dense1 = next(g for g in groups if g.budget == "1x")
    assert [g.budget for g in budget_siblings(dense1, groups)] == ["1x", "2x", "4x"]
    gmp = next(g for g in groups if g.sparsity_method == "gmp")
    assert baseline_for(gmp, groups).mean() == 84.0  # the dense twin at 2x, from the other experiment
    assert "2x (126 steps x 32, 2000 train / 500 eval examples)" == gmp.budget_text


def test_curve_and_budget_tables_show_knees_paper_points_and_deltas():
    from suite.report.curve_tables import budget_tables, curve_tables

    recs = [record("c", seed=s, primary=85.0) for s in (42, 43)]
    recs += [record("c", seed=s, sp="gmp", target=t, distill="logits", primary=p)
             for s in (42, 43) for t, p in ((0.5, 84.8), (0.8, 83.2), (0.9, 78.0))]
    recs += [record("b", budget=b, steps=n, primary=d) for b, n, d in (("1x", 63, 85.0), ("2x", 126, 85.2))]
    recs += [record("b", budget=b, steps=n, sp="gmp", target=0.9, distill="logits", primary=p)
             for b, n, p in (("1x", 63, 78.0), ("2x", 126, 80.0))]
    groups = group_cells([Cell(r) for r in recs])
    md = curve_tables(groups)["sparsity_curves-quick"]
    row = next(line for line in md.splitlines() if line.startswith("| minilm gmp + logits @1x | 42,43"))
    assert "84.80 ± 0.00 (-0.20)" in row and "| 65% | 80% |" in row  # knees: 0.5 + 0.3 x 0.8 / 1.6, 0.8 + 0.1 x 0.2 / 5.2
    assert "| paper: bert_base unstructured (prune_ofa) |" in md and "90.88" in md
    budget = budget_tables(groups)["budget_curves-quick"]
    assert "| arm | 1x | 2x |" in budget and "80.00 (-5.20 [-5.8" in budget and "80.00 (-5.20" in budget
    assert "78.00 (-7.00 [-7.7" in budget and ", 126 steps |" in budget  # each cell's own steps


def test_movement_is_its_own_line_beside_gmp():
    from suite.report.curve_tables import curve_tables
    from suite.report.plots import sparsity_curve_series

    kd = {"distill.alpha_task": "0.1", "distill.alpha_kd": "0.9"}  # movement's own KD pairing
    recs = [record("c", primary=85.0)]
    recs += [record("c", sp="gmp", target=t, distill="logits", primary=p) for t, p in ((0.9, 78.0), (0.95, 70.0))]
    recs += [record("c", sp="movement", target=t, distill="logits", variant=kd, primary=p)
             for t, p in ((0.9, 81.0), (0.95, 77.0))]
    groups = group_cells([Cell(r) for r in recs])
    assert {g.sparsity_label for g in groups} == {"dense", "gmp 90%", "gmp 95%", "movement 90%", "movement 95%"}
    md = curve_tables(groups)["sparsity_curves-quick"]
    row = next(line for line in md.splitlines() if line.startswith("| minilm movement + logits"))
    assert "| 81.00 (-4.00) | 77.00 (-8.00) |" in row  # its own points, Δ to the same dense
    assert any(line.startswith("| minilm gmp + logits") for line in md.splitlines())
    lines = sparsity_curve_series(groups)[("quick", "sst2")]["lines"]
    assert sorted(label.split()[1] for label in lines) == ["gmp", "movement"]


# ------------------------------------------------------------------ from a synthetic MLflow store

def test_load_reads_only_finished_records(store):
    assert len(store.cells) == len(RECORDS) + 1  # + the older run of a re-run cell
    assert store.without_record == 1  # the FINISHED run without result.json is counted, not read
    groups = group_cells(store.cells)
    assert sum(len(g.cells) for g in groups) == len(RECORDS)
    assert {g.mean() for g in groups if g.paper == "default" and g.model == "minilm" and g.task == "sst2"} == {90.5}
    assert store.kernel_source.startswith("mlflow:kernels-bench/")
    assert store.cells[0].environment["cpu_model"] == "Test CPU"


def test_verdicts_from_the_store_follow_the_rules(store):
    from suite.report.claims import claims_markdown, verdicts

    groups = group_cells(store.cells)
    rows = verdicts(groups, store.kernel_rows)
    first = {}
    for r in rows:
        first.setdefault(r.id, r.verdict)
    assert first == EXPECTED
    ic1 = next(r for r in rows if r.id == "IC1")
    assert ic1.profile == "quick" and ic1.model == "minilm" and ic1.evidence and "63 steps x 32" in ic1.budget
    md = claims_markdown(rows)
    assert md == claims_markdown(verdicts(groups, store.kernel_rows))  # pure
    assert "| PO1 | prune_ofa |" in md and "**holds**" in md and "**not run**" in md
    assert "straddles -1.00: ~5 seeds" in md  # an inconclusive row says what would decide it


def test_built_tables_show_ours_paper_and_delta(built):
    md = (built / "tables" / "prune_ofa-quick.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| minilm | gmp 90% | fp32"))
    assert "89.50" in row and "90.88 (bert_base) [1]" in row and "-1.00" in row and "10.0x" in row
    dense = (built / "tables" / "default-quick.md").read_text()
    assert "90.50 ± 0.71" in dense  # mean ± std over two seeds
    ours = {float(x) for x in re.findall(r"\| (\d+\.\d\d)(?: ±| \|)", dense)}
    assert ours <= expected_primaries() | {90.5}  # only stored numbers (or their means)
    ic = (built / "tables" / "intelcaffe_int8-quick.md").read_text()
    assert "quant.calibration=percentile" in ic and "89.00" in ic
    assert MALICIOUS not in (built / "leaderboard.html").read_text()
    for name in ("claims.md", "plots/accuracy_vs_compression_quick_sst2.svg", "plots/kernel_speedup_vs_sparsity.svg"):
        assert (built / name).is_file(), name


def test_kernel_csv_fallback(store_uri, tmp_path):
    csv = tmp_path / "bench.csv"
    csv.write_text(KERNEL_CSV)
    store = load_store(store_uri, (tmp_path / "missing.csv", csv), kernel_experiment="no-such-experiment")
    assert store.kernel_source == str(csv) and len(store.kernel_rows) == 5


def test_plots_draw_curves_and_budgets(tmp_path):
    from suite.report.plots import render_all

    recs = [record(primary=85.0)] + [record(sp="gmp", target=t, distill="logits", primary=p)
                                     for t, p in ((0.5, 84.0), (0.9, 78.0))]
    recs += [record(budget="2x", steps=126, primary=85.5), record(budget="2x", steps=126, sp="gmp", target=0.9,
                                                                  distill="logits", primary=80.0)]
    figs = render_all(group_cells([Cell(r) for r in recs]), [], "", tmp_path)
    names = {f.name for f in figs}
    assert {"accuracy_vs_sparsity_quick_sst2", "delta_vs_budget_quick_sst2"} <= names
    assert all(f.png.is_file() and f.svg.is_file() for f in figs)
