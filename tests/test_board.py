"""The board's plumbing: merge by cell id + machine, v1 boards upgraded, the schema generated from
CellRecord, publish refusals, the atomic swap, host-free results/, the CLI's guards, the summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from board_support import MALICIOUS, grid, record, write_board

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
    (out / "plots").mkdir()
    (out / "plots" / "stale.svg").write_text("old")
    (out / "plots" / "leaderboard_board_screenshot.png").write_bytes(b"png")
    write(report, store, out)
    assert (out / "README.md").read_text() == "hand written\n" and (out / "kernels" / "bench.csv").is_file()
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
