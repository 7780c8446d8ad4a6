"""suite.report: load from MLflow -> tables, plots, leaderboard; pure rendering; CLI."""

from __future__ import annotations

import json
import math
import re

import pytest
from test_report_support import EXPECTED, KERNEL_CSV, MALICIOUS, expected_primaries, shared_store

from suite.report import build, render
from suite.report.load import kernel_sparsity, load_store, parse_kernel_csv
from suite.report.plots import kernel_series, pareto_front
from suite.report.records import Cell, group_cells
from suite.report.references import REFERENCES, find_reference


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    return shared_store(tmp_path_factory)


@pytest.fixture(scope="module")
def store(store_uri):
    return load_store(store_uri)


@pytest.fixture(scope="module")
def built(store_uri, tmp_path_factory):
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
    rows = parse_kernel_csv(KERNEL_CSV)
    series = kernel_series(rows)
    assert series["sparq_csr (unstructured)"] == [(0.5, pytest.approx(1.6667)), (0.9, pytest.approx(4.0))]
    assert series["torch_fp32"] == [(0.9, 1.0)]


def test_reference_lookup_names_the_other_model():
    match = find_reference("prune_ofa", "minilm", "sst2", "gmp", 0.9, 32)
    assert match and match.ref.metrics == {"accuracy": 90.88} and not match.exact_model
    assert match.ref.model == "bert_base"
    assert find_reference("prune_ofa", "bert_large", "sst2", "gmp", 0.9, 32).ref.metrics == {"accuracy": 92.95}
    assert find_reference("prune_ofa", "minilm", "sst2", "gmp", 0.7, 32) is None  # no guess
    assert all(r.source for r in REFERENCES)


def _cell(seed, primary, **params):
    base = {"model": "m", "task": "sst2", "profile": "quick", "seed": str(seed), "sparsity.method": "dense",
            "sparsity.target": "0.0", "quant.method": "fp32", "quant.weight_bits": "32",
            "quant.act_bits": "32", "distill.method": "none", "experiment": "e", "task.primary": "accuracy"}
    return Cell(f"r{seed}{primary}", "e-quick", {**base, **params},
                {"eval_primary": primary, "eval_accuracy": primary / 100},
                {"cell_id": f"{seed}{params}"}, start_time=seed)


def test_groups_average_over_seeds_and_name_variants():
    cells = [_cell(1, 80.0), _cell(2, 82.0), _cell(1, 70.0, **{"quant.calibration": "max", "quant.method": "ptq"}),
             _cell(1, 71.0, **{"quant.calibration": "entropy", "quant.method": "ptq"})]
    groups = group_cells(cells)
    dense = [g for g in groups if g.quant_method == "fp32"]
    assert len(dense) == 1 and dense[0].mean() == pytest.approx(81.0)
    assert dense[0].std() == pytest.approx(math.sqrt(2))
    assert dense[0].variant == ""  # keys of other methods are not pinned on it
    assert sorted(g.variant for g in groups if g.quant_method == "ptq") == [
        "quant.calibration=entropy", "quant.calibration=max"]


def test_profile_recipes_are_rows_and_get_their_own_dense_baseline():
    from suite.report.records import baseline_for

    big = {"profile.train_samples": "8000"}
    gmp = {"sparsity.method": "gmp", "sparsity.target": "0.9"}
    cells = [_cell(1, 80.0, **{"profile.train_samples": "2000"}), _cell(1, 85.0, **big),
             _cell(1, 60.0, **gmp, **{"profile.train_samples": "2000"}), _cell(1, 70.0, **gmp, **big)]
    groups = group_cells(cells)
    assert len(groups) == 4 and all(len(g.cells) == 1 for g in groups)  # not merged as "seeds"
    for g in groups:
        base = baseline_for(g, groups)
        assert base.first.params["profile.train_samples"] == g.first.params["profile.train_samples"]


def test_variant_names_only_keys_both_cells_have():
    gmp = {"sparsity.method": "gmp", "sparsity.target": "0.9", "stage": "finetune"}
    transfer = {**gmp, "stage": "transfer", "upstream.steps": "200", "upstream.lr": "0.0001"}
    groups = group_cells([_cell(1, 60.0, **gmp), _cell(1, 70.0, **transfer)])
    assert sorted(g.variant for g in groups) == ["stage=finetune", "stage=transfer"]


def test_variants_are_named_per_experiment_table():
    other = {"experiment": "other", "profile.train_samples": "8000"}
    cells = [_cell(1, 80.0, **{"profile.train_samples": "2000"}), _cell(1, 85.0, **{"profile.train_samples": "8000"}),
             _cell(1, 84.0, **other)]
    groups = group_cells(cells)
    assert sorted(g.variant for g in groups if g.paper == "e") == ["profile.train_samples=2000",
                                                                    "profile.train_samples=8000"]
    assert [g.variant for g in groups if g.paper == "other"] == [""]


def test_pairs_whose_dense_baseline_is_at_chance_are_not_judged():
    from suite.report.claims import CLAIMS

    cola = {"task": "cola", "task.primary": "mcc"}
    gmp = {**cola, "sparsity.method": "gmp", "sparsity.target": "0.9", "distill.method": "logits"}
    at_chance = CLAIMS["PO1"].fn(group_cells([_cell(1, 0.0, **cola), _cell(1, 0.0, **gmp)]), [])
    assert at_chance.status == "not run" and "dense baseline at chance" in at_chance.detail
    learned = CLAIMS["PO1"].fn(group_cells([_cell(1, 30.0, **cola), _cell(1, 29.0, **gmp)]), [])
    assert learned.status == "holds" and "1/1" in learned.detail


def test_dc2_judges_only_zero_preserving_quantizers():
    from suite.report.claims import CLAIMS

    nm = {"sparsity.method": "nm", "sparsity.target": "0.5", "quant.method": "qat", "quant.weight_bits": "4"}
    zp, nozp = _cell(1, 89.0, **nm, **{"quant.zero_preserving": "True"}), \
        _cell(1, 80.0, **nm, **{"quant.zero_preserving": "False"})
    zp.metrics["sparsity_measured"], nozp.metrics["sparsity_measured"] = 0.5, 0.0  # the ablation leaks
    assert CLAIMS["DC2"].fn(group_cells([zp, nozp]), []).status == "holds"
    zp.metrics["sparsity_measured"] = 0.3
    assert CLAIMS["DC2"].fn(group_cells([zp, nozp]), []).status == "does not hold"


def test_ablations_hub_and_verdicts_of_dc1_dc3():
    from suite.report.claims import CLAIMS, ablations

    nm = {"sparsity.method": "nm", "sparsity.n": "2", "sparsity.m": "4", "quant.method": "qat",
          "quant.weight_bits": "4", "quant.act_bits": "8"}
    full = {"quant.zero_preserving": "True", "quant.scale_init": "mse", "quant.dropout_schedule": "linear"}
    cells = [_cell(1, 90.0), _cell(1, 89.5, **nm, **full),
             _cell(1, 88.0, **nm, **{**full, "quant.zero_preserving": "False"}),
             _cell(1, 89.0, **nm, **{**full, "quant.scale_init": "default"}),
             _cell(1, 89.9, **nm, **{**full, "quant.dropout_schedule": "none"})]
    groups = group_cells(cells)
    found = sorted((k, f.mean(), a.mean()) for k, f, a in ablations(groups))
    assert found == [("quant.dropout_schedule", 89.5, 89.9), ("quant.scale_init", 89.5, 89.0),
                     ("quant.zero_preserving", 89.5, 88.0)]
    dc1 = CLAIMS["DC1"].fn(groups, [])
    assert dc1.status == "holds" and "1/1" in dc1.detail  # the ablations are not judged
    dc3 = CLAIMS["DC3"].fn(groups, [])
    assert dc3.status == "does not hold" and "quant.dropout_schedule: -0.40 pt" in dc3.detail


# ------------------------------------------------------------------ from a synthetic MLflow store

def test_load_skips_failed_and_superseded_runs(store):
    assert len(store.cells) == 15  # 14 cells + the older run of a re-run cell
    groups = group_cells(store.cells)
    assert sum(len(g.cells) for g in groups) == 14
    assert {g.mean() for g in groups if g.paper == "default" and g.model == "minilm" and g.task == "sst2"} == {90.5}
    assert store.kernel_source.startswith("mlflow:kernels-bench/")
    assert store.cells[0].environment["cpu_model"] == "Test CPU"


def test_render_is_pure_and_verdicts_follow_rules(store):
    a, b = render(store), render(store)
    assert a.tables == b.tables and a.claims_md == b.claims_md and a.leaderboard == b.leaderboard
    verdicts = {}
    for row in a.claim_rows:
        verdicts.setdefault(row.claim.id, row.verdict.status)
    assert verdicts == EXPECTED
    ic1 = next(r for r in a.claim_rows if r.claim.id == "IC1")
    assert ic1.verdict.profile == "quick" and ic1.verdict.models == ["minilm"] and ic1.verdict.cells


def test_tables_show_ours_paper_and_delta(built):
    md = (built / "tables" / "prune_ofa-quick.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| minilm | gmp 90% | fp32"))
    assert "89.50" in row and "90.88 (bert_base) [1]" in row and "-1.00" in row and "10.0x" in row
    dense = (built / "tables" / "default-quick.md").read_text()
    assert "90.50 ± 0.71" in dense  # mean ± std over two seeds
    assert "Source: IntelLabs/Model-Compression-Research-Package" in md
    ic = (built / "tables" / "intelcaffe_int8-quick.md").read_text()
    assert "quant.calibration=percentile" in ic and "89.00" in ic


def test_tables_hold_only_stored_or_reference_numbers(built):
    """Every 'ours' number in a table is an eval metric in MLflow (or mean/std of them)."""
    md = (built / "tables" / "default-quick.md").read_text()
    ours = {float(x) for x in re.findall(r"\| (\d+\.\d\d)(?: ±| \|)", md)}
    assert ours <= expected_primaries() | {90.5, 88.0}


def test_leaderboard_json_matches_schema_and_mlflow(built, store):
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads((built / "leaderboard.json").read_text())
    schema = json.loads((built / "leaderboard.schema.json").read_text())
    jsonschema.validate(doc, schema)
    recs = doc["records"]
    assert len(recs) == 14
    assert {r["eval_primary"] for r in recs} == expected_primaries()
    ids = {c.cell_id for c in store.cells}
    assert all(r["cell_id"] in ids for r in recs)
    ptq = [r for r in recs if r["quant"]["method"] == "ptq"]
    assert {r["quant"]["calibration"] for r in ptq} == {"max", "percentile", "entropy"}
    assert ptq[0]["latency_ms"] == {"sparq_int8": 10.0, "torch_fp32": 20.0}
    assert ptq[0]["environment"]["cpu_model"] == "Test CPU" and "examples" not in ptq[0]["eval"]


def test_outputs_exist_and_html_escapes(built):
    for name in ("tables.md", "claims.md", "leaderboard.html", "leaderboard.json", "leaderboard.schema.json",
                 "plots/accuracy_vs_compression_quick_sst2.png", "plots/accuracy_vs_compression_quick_sst2.svg",
                 "plots/accuracy_vs_latency_quick_sst2.svg", "plots/kernel_speedup_vs_sparsity.svg"):
        assert (built / name).is_file(), name
    page = (built / "leaderboard.html").read_text()
    assert MALICIOUS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # ours, nothing injected
    assert "http://" not in page.replace("http-equiv", "") and "https://" not in page  # no network
    claims = (built / "claims.md").read_text()
    assert "| IC2 |" in claims and "**holds**" in claims and "**not run**" in claims


def test_kernel_csv_fallback(store_uri, tmp_path):
    csv = tmp_path / "bench.csv"
    csv.write_text(KERNEL_CSV)
    store = load_store(store_uri, (tmp_path / "missing.csv", csv), environment=False,
                       kernel_experiment="no-such-experiment")
    assert store.kernel_source == str(csv) and len(store.kernel_rows) == 5


def test_no_runs_renders_empty_results_with_kernel_verdict(tmp_path):
    from suite.report import write
    from suite.report.load import Store

    store = Store("sqlite:///nowhere.db", [], parse_kernel_csv(KERNEL_CSV), "bench.csv")
    write(render(store), store, tmp_path)
    assert (tmp_path / "plots" / "kernel_speedup_vs_sparsity.png").is_file()
    claims = (tmp_path / "claims.md").read_text()
    assert "kernel bench" in claims and "2.50x" in claims and claims.count("**not run**") == 11
    assert "No finished runs" in (tmp_path / "tables.md").read_text()
    assert "No latency_ms_* metrics" in (tmp_path / "plots" / "README.md").read_text()
    assert json.loads((tmp_path / "leaderboard.json").read_text())["records"] == []


def test_cli_builds_from_mlflow_without_running_cells(store_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    from suite.report.__main__ import main

    client = MlflowClient(store_uri)
    before = sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments())
    main(["--out", str(tmp_path), "--tracking-uri", store_uri, "--no-environment"])
    after = sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments())
    assert before == after and (tmp_path / "leaderboard.html").is_file()


@pytest.mark.slow
def test_report_of_a_real_smoke_cell(run_cell, smoke_overrides, tmp_path):
    """One real cell through suite.run, then the report reads its keys back."""
    import os

    result = run_cell(smoke_overrides + ["task=sst2", "seed=7"])
    assert result.status in ("FINISHED", "SKIPPED")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    build(tmp_path, uri)
    assert os.environ["MLFLOW_TRACKING_URI"] == uri  # the report leaves the process-wide store alone
    recs = json.loads((tmp_path / "leaderboard.json").read_text())["records"]
    mine = [r for r in recs if r["cell_id"] == result.cell_id]
    assert len(mine) == 1 and mine[0]["task"] == "sst2" and mine[0]["profile"] == "smoke"
    assert mine[0]["eval_primary"] == pytest.approx(result.metrics["eval_primary"])
    assert mine[0]["compression"]["packed"] is not None and "accuracy" in mine[0]["eval"]


def test_s2_equal_latency_pairs():
    from suite.report.claims import CLAIMS

    def cell(seed, primary, nbytes, ms, **params):
        c = _cell(seed, primary, **params)
        c.metrics.update({"encoder_bytes_dense_fp32": nbytes, **{f"latency_ms_{k}": v for k, v in ms.items()}})
        return c

    sparse = {"sparsity.method": "gmp", "sparsity.target": "0.5"}
    small = {"model.shrink_keep_every": "2"}
    groups = group_cells([cell(1, 88.0, 100.0, {"torch_fp32": 10.0, "sparq_csr": 10.5}, **sparse),
                          cell(1, 85.0, 50.0, {"torch_fp32": 10.0}, **small)])
    v = CLAIMS["S2"].fn(groups, [])
    assert v.status == "holds" and "1/1" in v.detail
    groups = group_cells([cell(1, 88.0, 100.0, {"sparq_csr": 30.0}, **sparse),
                          cell(1, 85.0, 50.0, {"torch_fp32": 10.0}, **small)])
    assert CLAIMS["S2"].fn(groups, []).status == "does not hold"  # sparse never reaches equal latency


def test_dc3_ignores_ptq_calibration_variants():
    """Calibration methods are IC3's business, not an ablation of the IBM techniques."""
    from suite.report.claims import CLAIMS

    ptq = {"quant.method": "ptq", "quant.weight_bits": "8", "quant.act_bits": "8"}
    cells = [_cell(1, 90.0)] + [_cell(1, acc, **ptq, **{"quant.calibration": c})
                                for c, acc in (("maxabs", 89.0), ("percentile", 89.2), ("entropy", 86.0))]
    assert CLAIMS["DC3"].fn(group_cells(cells), []).status == "not run"
