"""The board's plumbing: merge by cell id + machine, v1 boards upgraded, the schema generated from
CellRecord, publish refusals, the atomic swap, host-free results/, the CLI's guards, the summary;
and what it shows: one row per configuration with its interval, ranked like for like, nothing at
chance ranked, on a front or a best-under answer, machines only from records that measured latency,
the generated README."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from board_support import CHANCE_SST2, MALICIOUS, configs_grid, grid, record, write_board

from suite.report import leaderboard as lb

ROOT = Path(__file__).resolve().parent.parent


def test_merge_keeps_both_machines_and_drops_duplicates_by_cell_and_machine():
    a, b = grid(), grid("Test CPU B", "avx2", shift=-1.0)
    merged, dropped = lb.merge(a, b, a)
    assert len(merged) == len(a) + len(b) and dropped == len(a)
    labels = {lb.machine_label(r) for r in merged}
    assert labels == {"Test CPU A · 2 threads · avx512_vnni", "Test CPU B · 2 threads · avx2"}
    # same machine, other kernel path (SPARQ_KERNEL_ISA): another row, not a duplicate
    portable = grid(kernel_path="portable")
    assert len(lb.merge(a, portable)[0]) == 2 * len(a)
    # of two records of one cell on one machine, a clean tree wins over a dirty one, in any order
    clean, dirty = record(primary=85.0), record(primary=99.0, dirty=True)
    for order in ((clean, dirty), (dirty, clean)):
        (kept,), n = lb.merge([order[0]], [order[1]])
        assert n == 1 and kept["metrics"]["eval_primary"] == 85.0


def test_machine_is_what_a_reader_compares():
    m = lb.machine(record(flags=["sse4_2", "avx2", "fma", "avx512f", "avx512_vnni", "amx_int8"], threads=4))
    assert m["isa"] == ["avx2", "fma", "avx512f", "avx512_vnni", "amx_int8"]
    assert (m["threads"], m["kernel_path"], m["torch"]) == (4, "avx512_vnni", "2.13.0+cpu")
    legacy = record(kernel_path=None, threads=1)
    assert lb.machine_label(legacy) == "Test CPU A · 1 thread · avx512_vnni cpu"


def test_board_validates_against_its_generated_schema(tmp_path):
    path = write_board(tmp_path / "leaderboard.json", grid())
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, lb.schema())
    assert lb.schema()["properties"]["records"]["items"] == {"$ref": "#/$defs/CellRecord"}
    bad = dict(doc, records=[dict(doc["records"][0], axes={"task": "sst2"})])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, lb.schema())
    assert lb.read_board(path) == doc["records"]


def test_v1_board_is_upgraded_to_records(tmp_path):
    v1 = {"schema_version": 1, "generated_from": "x", "records": [{
        "run_id": "r", "cell_id": "c" * 16, "experiment": "prune_ofa-quick", "paper": "prune_ofa", "profile": "quick",
        "model": "minilm", "task": "sst2", "seed": "42",
        "sparsity": {"method": "nm", "target": 0.5, "n": 2, "m": 4, "label": "nm 2:4", "measured": 0.5},
        "quant": {"method": "qat", "weight_bits": 4, "act_bits": 8, "calibration": None, "label": "qat w4a8"},
        "distill": "logits", "variant": {"profile.train_samples": "8000", "stage": "transfer"},
        "eval": {"accuracy": 0.8}, "eval_primary": 80.0,
        "compression": {"nominal": 16.0, "packed": 9.5, "encoder_bytes_packed": 1.0, "encoder_bytes_dense_fp32": 9.5},
        "latency_ms": {"sparq_nm": 3.0}, "train_seconds": 1.0, "wall_seconds": 2.0,
        "environment": {"git_sha": "abc+dirty", "threads": "1", "cpu_model": "AMD EPYC", "cpu_flags": "avx2 fma",
                        "torch": "2.13.0+cpu", "data_source": "data_dir", "train_from_dev": "false"}}]}
    path = tmp_path / "leaderboard.json"
    path.write_text(json.dumps(v1))
    (r,) = lb.read_board(path)
    assert (r["git_sha"], r["git_dirty"], r["command"]) == ("abc", True, "./reproduce.sh prune_ofa_transfer")
    assert r["axes"]["sparsity_pattern"] == "2:4" and r["axes"]["init"] == "upstream" and r["axes"]["variant"] == {}
    assert r["budget"]["train_examples"] == 8000 and r["latency"]["latency_ms_sparq_nm"] == 3.0
    assert r["environment"]["cpu_flags"] == ["avx2", "fma"] and r["metrics"]["eval_accuracy"] == 0.8


def test_host_leaks_finds_paths_and_uris():
    assert lb.host_leaks("sqlite:////work/main/mlflow.db") and lb.host_leaks("cache at /tmp/x/y")
    assert lb.host_leaks(str(ROOT / "mlflow.db"))
    assert lb.host_leaks("python -m suite.run task=sst2 sparsity=gmp; ./reproduce.sh prune_ofa") == []


def test_committed_results_are_host_free():
    leaks = {}
    for path in (ROOT / "results").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".html", ".csv", ".svg"):
            found = lb.host_leaks(path.read_text(errors="replace"))
            if found:
                leaks[str(path.relative_to(ROOT))] = found[:3]
    assert leaks == {}


def _report(tmp_path, records):
    from suite.report import collect, render

    store, sources, _ = collect(None, (write_board(tmp_path / "in" / "leaderboard.json", records),))
    return store, render(store, sources)


def test_publish_refuses_dirty_records_and_host_paths(tmp_path):
    from suite.report import check_publishable

    _, report = _report(tmp_path, grid() + [record(task="rte", dirty=True)])
    (problem,) = check_publishable(report)
    assert "1 records come from a modified tree" in problem
    assert check_publishable(report, allow_dirty=True) == []
    leaky = record(task="qnli")
    leaky["command"] = f"python -m suite.run data_dir={ROOT}/data"
    _, report = _report(tmp_path / "2", [leaky])
    assert "host paths" in check_publishable(report)[0]


def test_write_swaps_atomically_and_keeps_foreign_files(tmp_path, monkeypatch):
    from suite.report import html, write

    store, report = _report(tmp_path, grid())
    out = tmp_path / "results"
    (out / "kernels").mkdir(parents=True)
    (out / "kernels" / "bench.csv").write_text("k\n")
    (out / "README.md").write_text("hand written\n")
    (out / "NOTES.md").write_text("foreign\n")
    (out / "plots").mkdir()
    (out / "plots" / "stale.svg").write_text("old")
    (out / "plots" / "leaderboard_board_screenshot.png").write_bytes(b"png")
    write(report, store, out)
    assert (out / "NOTES.md").read_text() == "foreign\n" and (out / "kernels" / "bench.csv").is_file()
    readme = (out / "README.md").read_text()  # generated from the records, not carried over
    assert "hand written" not in readme and "**7 records**" in readme and "local sparq report" in readme
    assert (out / "plots" / "leaderboard_board_screenshot.png").read_bytes() == b"png"  # screenshots.py's
    assert not (out / "plots" / "stale.svg").exists() and (out / "leaderboard.html").is_file()
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*a, **k):
        raise RuntimeError("render failed half way")

    monkeypatch.setattr(html, "page", broken)
    with pytest.raises(RuntimeError):
        write(report, store, out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the old report, whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.is_dir()] == []  # no temp dir left


def test_page_escapes_every_string(tmp_path):
    store, report = _report(tmp_path, grid())
    from suite.report import html

    text = html.page(report)
    assert MALICIOUS not in text and "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert text.count("<script") == 1
    assert str(html.breakable("ibm_<b>x")) == "ibm_<wbr>&lt;b&gt;x"  # wraps at underscores, still escaped


def test_summary_lists_rows_deltas_and_the_report_path(tmp_path):
    from suite.report import summary

    _, report = _report(tmp_path, grid())
    text = summary.text(report.groups, [{"id": "PO1", "verdict": "does not hold", "evidence": [grid()[2]["cell_id"]]}],
                        ["prune_ofa-*"], tmp_path / "out")
    lines = text.splitlines()
    assert "summary of prune_ofa-*" in lines[0] and "score % ± std" in lines[1]
    dense = next(line for line in lines if line.startswith("prune_ofa sst2 minilm dense fp32"))
    assert "84.80 ± 0.28" in dense and " base " in dense
    gmp = next(line for line in lines if "sst2 minilm gmp 90% fp32 kd:logits" in line)
    assert "-4.80" in gmp and "PO1 fails" in gmp and "1.00x" not in gmp
    assert lines[-1].startswith(f"[sparq] local report: {tmp_path / 'out' / 'leaderboard.html'}")
    assert "no finished cells" in summary.text(report.groups, [], ["other-*"], tmp_path)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "suite.report", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_guards_the_published_results(tmp_path):
    proc = _cli("--out", "results")
    assert proc.returncode == 2 and "write it with --publish" in proc.stderr
    proc = _cli("--merge", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_cli_merges_two_boards_into_one_page(tmp_path):
    a = write_board(tmp_path / "a" / "leaderboard.json", grid())
    b = write_board(tmp_path / "b" / "leaderboard.json", grid("Test CPU B", "avx2", shift=-1.0))
    proc = _cli("--merge", str(a), str(b), str(a), "--out", str(tmp_path / "merged"), "--summary")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "merged" / "leaderboard.json").read_text())
    assert len(doc["records"]) == 14 and doc["sources"] == ["board:a/leaderboard.json", "board:b/leaderboard.json",
                                                            "board:a/leaderboard.json"]
    page = (tmp_path / "merged" / "leaderboard.html").read_text()
    assert "Test CPU A · 2 threads · avx512_vnni" in page and "Test CPU B · 2 threads · avx2" in page
    assert "local report:" in proc.stdout


# ------------------------------------------------------------------ what the board shows

def _configs(records):
    from suite.report import configs, views

    return configs.config_rows(views.rows(records))


def test_one_row_per_configuration_with_the_interval_of_its_mean_and_of_its_delta():
    cfgs = _configs(configs_grid())
    assert len(cfgs) == 9  # 13 records: seeds of one configuration share a row
    dense = next(c for c in cfgs if c.task == "sst2" and c.label == "minilm · dense · fp32" and c.budget == "1x")
    assert dense.seeds == ["42", "43", "44"] and dense.mean == pytest.approx(85.0) and dense.base
    assert dense.lo < dense.mean < dense.hi and dense.hi - dense.lo < 6  # seeds and 500 examples resampled
    assert dense.delta_text == "dense baseline" and dense.rank == 1
    gmp = next(c for c in cfgs if c.task == "sst2" and c.sparsity == "gmp 90%")
    assert gmp.mean == pytest.approx(80.3) and gmp.delta.value == pytest.approx(-4.7)
    assert gmp.delta.lo < -4.7 < gmp.delta.hi and gmp.delta_text.startswith("-4.70 [")
    assert [r.seed for r in gmp.records] == ["42", "43"] and all(r.command and r.git for r in gmp.records)
    # without per-example outcomes: the mean and its spread over seeds, no interval
    plain = _configs([record(primary=85.0), record(primary=84.0, seed=43)])
    assert len(plain) == 1 and plain[0].interval_text == "± 0.71 sd (no interval)"


def test_blocks_rank_like_for_like_and_leave_configurations_at_chance_unranked():
    from suite.report.configs import blocks

    cfgs = _configs(configs_grid())
    titles = [t for t, _ in blocks(cfgs)]
    assert titles == ["mrpc · quick · 2000 train examples · budget 1x · chance 68.38%",
                      "sst2 · quick · 2000 train examples · budget 1x · chance 50.92%",
                      "sst2 · quick · 2000 train examples · budget 2x · chance 50.92%"]
    for _, rows in blocks(cfgs):
        ranked = [c for c in rows if c.rank is not None]
        assert [c.rank for c in ranked] == list(range(1, len(ranked) + 1)) and rows[:len(ranked)] == ranked
        assert not any(c.at_chance for c in ranked)
        assert [c.mean for c in ranked] == sorted((c.mean for c in ranked), reverse=True)
    low = {c.model if c.task == "mrpc" else c.sparsity: c for c in cfgs if c.at_chance}
    assert set(low) == {MALICIOUS, "gmp 95%"} and low["gmp 95%"].mean == CHANCE_SST2
    assert low["gmp 95%"].rank is None and low["gmp 95%"].compressed


def test_no_configuration_at_chance_on_a_front_or_in_best_under():
    from suite.report.views import best_under_budget, pareto

    cfgs = _configs(configs_grid())
    chance = next(c for c in cfgs if c.at_chance and c.task == "sst2")
    # it is the smallest and fastest: without the rule it would be on both fronts and answer every budget
    assert chance.size_mb == min(c.size_mb for c in cfgs) and chance.latency == min(c.latency or 99 for c in cfgs)
    for name, comp, lat in pareto(cfgs):
        for s in (comp, lat):
            assert s.chance is not None and s.points
            assert not any(p["front"] and p["chance"] for p in s.points)
            assert any(p["front"] for p in s.points)
        if name == "sst2 (quick)":
            assert any(p["key"] == chance.key and not p["front"] for p in comp.points)
    for cost in ("size_mb", "latency"):
        for _, steps in best_under_budget(cfgs, cost):
            assert steps and not any(c.at_chance for c in steps)


def test_a_record_without_latency_makes_no_machine_of_its_own():
    from suite.report.machines import display_machines

    timed = record(latency=3.0, kernel_path="avx2", flags=["avx2", "fma"])
    untimed = record(distill="logits", kernel_path=None, flags=["avx2", "fma"])
    other = record(cpu="Other CPU", kernel_path=None, flags=["avx2"])
    assert display_machines([timed, untimed, other]) == [
        "Test CPU A · 2 threads · avx2", "Test CPU A · 2 threads · avx2", "Other CPU · 2 threads · avx2"]
    assert lb.machine_label(untimed) != lb.machine_label(timed)  # what made it a machine of its own before
    cfgs = _configs(configs_grid() + configs_grid("Test CPU B", "avx2", shift=-1.0))
    assert sorted({c.machine for c in cfgs}) == ["Test CPU A · 2 threads · avx512_vnni", "Test CPU B · 2 threads · avx2"]
    assert len(cfgs) == 18  # each configuration once per machine


def test_mean_interval_is_deterministic_and_needs_outcomes():
    from suite.report.configs import mean_interval
    from suite.report.records import Cell, group_cells

    (agree,) = group_cells([Cell(r) for r in (record(primary=85.0, seed=s, n_eval=500) for s in (1, 2, 3))])
    (spread,) = group_cells([Cell(r) for r in (record(primary=p, seed=s, n_eval=500)
                                               for s, p in ((1, 80.0), (2, 85.0), (3, 90.0)))])
    assert mean_interval(agree) == mean_interval(agree)
    lo, hi = mean_interval(agree)
    slo, shi = mean_interval(spread)
    assert lo < 85.0 < hi and shi - slo > 2 * (hi - lo)  # seeds that disagree widen it
    (bare,) = group_cells([Cell(record(primary=85.0))])
    assert all(v != v for v in mean_interval(bare))  # nan: no outcomes


def test_readme_describes_the_records_from_the_records():
    import shlex

    from suite.report import readme
    from suite.sweep import experiment_jobs

    def cmd(job):
        return " ".join(["python -m suite.run", *(shlex.quote(o) for o in job)])

    grid_job, recipe_job = experiment_jobs("prune_ofa")[1][0], experiment_jobs("recipes")[1][0]
    driver_job = [o for o in grid_job if not o.startswith("seed=")] + ["seed=99"]  # a seed the grid never runs
    recs = [record(seed=1, command=cmd(grid_job)), record(seed=2, command=cmd(driver_job)),
            record(task="mrpc", experiment="recipes-quick", dirty=True, command=cmd(recipe_job))]
    facts = readme.facts(recs, ["mlflow"], 2, 2)
    assert (facts["n"], facts["clean"], facts["dirty"], facts["record_versions"]) == (3, 2, 1, "v1 ×3")
    assert facts["profiles"] == "quick ×3" and facts["tasks"] == "sst2 ×2, mrpc ×1"
    rows = [(e["name"], e["records"], e["rebuilt_by"], e["in_all"]) for e in facts["experiments"]]
    assert rows == [("prune_ofa-quick", 1, "./reproduce.sh prune_ofa", True), ("prune_ofa-quick", 1, "", False),
                    ("recipes-quick", 1, "./reproduce.sh recipes", False)]
    assert readme.rebuilt_by("python -m suite.run profile=smoke") == "./reproduce.sh profile=smoke"  # the main job
    assert readme.rebuilt_by(cmd([*grid_job, "profile=smoke"])) == "./reproduce.sh prune_ofa profile=smoke"
    assert "prune_ofa" in readme.all_grids() and "recipes" not in readme.all_grids()
    text = readme.text(recs, ["mlflow"], 2, 2, published=True)
    assert text.startswith("# results/: the published reference") and "**3 records**" in text
    assert "| `recipes-quick` | 1 | `./reproduce.sh recipes` | no | 0 / 1 | 1 |" in text
    assert "| `prune_ofa-quick` | 1 | no grid: each record's own `command` | no |" in text
    assert lb.host_leaks(text) == []


def test_plots_draw_chance_and_keep_it_off_the_front(tmp_path):
    from suite.report.plots import Point, TaskAxes, _front

    axes = TaskAxes({("quick", "sst2"): "accuracy"}, {("quick", "sst2"): 50.92}, frozenset({"low"}))
    pts = [Point(1.0, 85.0, "dense", "dense", "fp32", ("d",)), Point(8.0, 80.0, "gmp", "gmp", "fp32", ("g",)),
           Point(16.0, 51.0, "gmp 95", "gmp", "fp32", ("low",))]
    assert [p.label for p in _front(pts, axes)] == ["dense", "gmp"]
    assert axes.ylabel(("quick", "sst2")) == "accuracy (%, mean over seeds)"


def test_rendered_plots_have_axis_titles_chance_lines_and_kernel_panels_per_m(tmp_path):
    from suite.report.load import parse_kernel_csv
    from suite.report.plots import kernel_panels, render_all
    from suite.report.records import Cell, group_cells

    csv = ("k,n,m,sparsity,pattern,backend,median_ms,speedup_vs_fp32\n"
           "768,768,1,0.9,unstructured,torch_fp32,1.0,1.0\n768,768,1,0.9,unstructured,sparq_csr,0.5,2.0\n"
           "768,768,128,0.9,unstructured,torch_fp32,8.0,1.0\n768,768,128,0.9,unstructured,sparq_csr,2.0,4.0\n")
    panels = kernel_panels(parse_kernel_csv(csv))
    assert {m for _, m in panels} == {1, 128}  # one panel per machine and M
    assert next(v for (_, m), v in panels.items() if m == 128)["sparq_csr (unstructured)"] == [(0.9, 4.0)]
    figs = {f.name: f for f in render_all(group_cells([Cell(r) for r in configs_grid()]), parse_kernel_csv(csv),
                                          "bench.csv", tmp_path)}
    comp = figs["accuracy_vs_compression_quick_sst2"].svg.read_text()
    assert "chance 50.9 (constant prediction)" in comp and "accuracy (%, mean over seeds)" in comp
    assert "at chance (off the front)" in comp and "packed compression (×" in comp
    assert "chance 68.4" in figs["accuracy_vs_latency_quick_mrpc"].svg.read_text()
    kern = figs["kernel_speedup_vs_sparsity"].svg.read_text()
    assert "M = 1 activation row (batch-1 latency)" in kern and "M = 128 activation rows (a batch)" in kern
    assert "speedup over torch fp32" in kern
