"""Faults tier: one bad record never takes the results down. Records are validated where they
enter (the MLflow store, merged boards), every view tolerates a missing metric, a report never
replaces one with records by an empty one unasked, and --publish is deliberate (clean tree, shows
its changes, never drops published records unasked, never publishes smoke records).
Synthetic records and boards (tests/board_support.py), scratch stores; seconds, no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from board_support import grid, record, write_board

from suite.report import build_report

pytestmark = pytest.mark.faults


def _store(root: Path, texts: dict[str, str | None]) -> tuple[str, dict[str, str]]:
    """An MLflow store with one FINISHED run per entry, its result.json the given text (None:
    no result.json); returns (uri, name -> run id)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("prune_ofa-quick", artifact_location=(root / "artifacts").as_uri())
    ids = {}
    for name, text in texts.items():
        rid = client.create_run(exp).info.run_id
        if text is not None:
            client.log_text(rid, text, "result.json")
        client.set_terminated(rid, "FINISHED")
        ids[name] = rid
    return uri, ids


GOOD = grid()[:4]  # sst2: two dense seeds, gmp 90% + KD, 2:4 w8 (timed)


def _bad_records() -> dict[str, str]:
    wrong_types = dict(record(task="mrpc", seed=7), axes={**record()["axes"], "seed": "not a seed"})
    null_metric = dict(record(task="stsb", primary=50.0, latency=4.0), run_id=None)  # the store's run id is its id
    null_metric["metrics"] = {"eval_pearson": None, "eval_primary": None}
    return {"corrupt": json.dumps(record(task="rte"))[:150], "invalid": json.dumps(wrong_types),
            "null metric": json.dumps(null_metric)}


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed-store")
    texts = {f"good {i}": json.dumps(r) for i, r in enumerate(GOOD)}
    texts.update(_bad_records())
    texts["no record"] = None  # a stage that died before its record: counted, not named as invalid
    return _store(root, texts)


def test_a_corrupt_an_invalid_and_a_null_metric_record_leave_the_report_to_the_good_ones(mixed_store, tmp_path,
                                                                                        caplog):
    uri, ids = mixed_store
    report, written = build_report(tmp_path / "out", uri)
    cells = {r["cell_id"] for r in report.board["records"]}
    assert cells == {r["cell_id"] for r in GOOD} | {json.loads(_bad_records()["null metric"])["cell_id"]}
    skipped = {s.where: s.why for s in report.skipped}
    corrupt, invalid = (f"run {ids[n]} (experiment prune_ofa-quick)" for n in ("corrupt", "invalid"))
    assert set(skipped) == {corrupt, invalid}
    assert skipped[corrupt].startswith("not valid JSON") and skipped[invalid].startswith("axes.seed: ")
    # all three are named: in one warning line each, and on the page
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sparq: warning:")]
    for name in ("corrupt", "invalid", "null metric"):
        assert sum(ids[name] in w for w in warnings) == 1, (name, warnings)
        assert ids[name] in (tmp_path / "out" / "leaderboard.html").read_text()
    assert all("\n" not in w for w in warnings)
    assert any("2 invalid records skipped" in w for w in report.warnings)  # at the top of the page
    # the null-metric cell is a row with "–", in no plot, and the timed cells still get their plots
    assert any(p.name.startswith("accuracy_vs_latency_quick_sst2") for p in written)
    assert not any("stsb" in p.name for p in written if p.suffix == ".png")


def test_cli_names_and_counts_the_skipped_records(mixed_store, tmp_path, capsys):
    from suite.report.__main__ import main

    uri, ids = mixed_store
    assert main(["--tracking-uri", uri, "--out", str(tmp_path / "out"), "--summary"]) == 0
    err = capsys.readouterr().err
    assert "5 records from mlflow; 2 records skipped as invalid" in err


def test_a_report_of_nothing_never_replaces_a_report_of_something_unasked(mixed_store, tmp_path):
    from suite.report import EmptyReport

    uri, _ = mixed_store
    out = tmp_path / "out"
    build_report(out, uri)
    before = (out / "leaderboard.json").read_text()
    only_corrupt, _ = _store(tmp_path / "corrupt-only", {"corrupt": _bad_records()["corrupt"]})
    with pytest.raises(EmptyReport, match=r"no records \(1 skipped as invalid\) but .* holds 5: kept it; pass --replace"):
        build_report(out, only_corrupt)
    assert (out / "leaderboard.json").read_text() == before
    report, _ = build_report(out, only_corrupt, replace=True)
    assert report.board["records"] == []


def test_every_view_tolerates_a_missing_metric(tmp_path):
    """eval_primary null (a NaN Pearson) on a timed, compressed cell, alone in its task and beside
    others: tables, plots (log scales), board, claims and the summary all build."""
    from suite.report import summary

    alone = record(task="stsb", method="gmp", target=0.9, latency=4.0)
    alone["metrics"] = {"eval_pearson": None, "eval_primary": None}
    beside = dict(record(method="nm", target=0.5, bits=8, latency=3.0, seed=44), metrics={"eval_primary": None})
    board = write_board(tmp_path / "in" / "leaderboard.json", grid() + [alone, beside])
    report, written = build_report(tmp_path / "out", boards=(board,))
    assert len(report.board["records"]) == 9 and written
    assert any("–" in t for t in report.tables.values())
    assert summary.text(report.groups, report.verdicts, [], tmp_path)


def test_claims_tolerate_a_missing_metric_in_their_evidence(tmp_path):
    """A null eval_primary on a cell every paper's claims compare (one seed each, no outcomes)."""
    from test_report_support import RECORDS

    records = [dict(r, metrics={**r["metrics"], "eval_primary": None, "eval_accuracy": None})
               if r["experiment"] != "default-quick" and r["axes"]["quant_method"] != "fp32" else r for r in RECORDS]
    report, _ = build_report(tmp_path / "out", boards=(write_board(tmp_path / "in" / "leaderboard.json", records),))
    assert {v.verdict for v in report.verdicts} <= {"holds", "does not hold", "inconclusive", "not run"}


# ------------------------------------------------------------------ --merge of foreign boards

def _board_with(tmp_path: Path, name: str, extra: list) -> Path:
    path = write_board(tmp_path / name / "leaderboard.json", grid())
    doc = json.loads(path.read_text())
    doc["records"] += extra
    path.write_text(json.dumps(doc))
    return path


def test_merge_skips_bad_records_naming_board_and_index(tmp_path):
    from suite.report import collect

    wrong_types = dict(record(task="rte"), metrics={"eval_primary": "high"})
    missing_keys = {k: v for k, v in record(task="qnli").items() if k not in ("axes", "cell_id")}
    newer = dict(record(task="cola"), schema_version=99)
    huge = record(task="wnli", model="m" * 1_000_000)
    path = _board_with(tmp_path, "foreign", [wrong_types, missing_keys, newer, huge, "not a record"])
    store, _, _ = collect(None, (path,))
    assert len(store.cells) == 7
    why = {s.where: s.why for s in store.skipped}
    assert set(why) == {f"foreign/leaderboard.json record {i}" for i in range(7, 12)}
    assert why["foreign/leaderboard.json record 7"].startswith("metrics.eval_primary: ")
    assert why["foreign/leaderboard.json record 8"].startswith("cell_id: Field required")
    assert "schema_version 99 is newer" in why["foreign/leaderboard.json record 9"]
    assert why["foreign/leaderboard.json record 10"] == "axes.model: a string of 1000000 characters (at most 200)"
    assert "not a record" in why["foreign/leaderboard.json record 11"]


@pytest.mark.parametrize("case", ["truncated", "newer board", "not a board"])
def test_merge_of_an_unreadable_board_is_one_line(case, tmp_path, capsys):
    from suite.report.__main__ import main

    path = write_board(tmp_path / "b" / "leaderboard.json", grid())
    text = path.read_text()
    path.write_text({"truncated": text[: len(text) // 2], "newer board": json.dumps({**json.loads(text), "schema_version": 3}),
                     "not a board": "[1, 2]"}[case])
    assert main(["--merge", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sparq: error: {path}: ")
    assert {"truncated": "not valid JSON", "newer board": "schema_version 3 is newer",
            "not a board": "not a leaderboard.json"}[case] in err[0]
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ --publish is deliberate

@pytest.fixture
def published(tmp_path, monkeypatch):
    """A results/ folder of seven published records, and a clean tree (git asked by tests below)."""
    from suite.report import publish as pub

    monkeypatch.setattr(pub, "modified_files", lambda root=None: [])
    out = tmp_path / "results"
    build_report(out, boards=(write_board(tmp_path / "a" / "leaderboard.json", grid()),), publish=True)
    return out


def test_publish_refuses_a_modified_tree_unless_allowed_and_then_says_so(tmp_path, monkeypatch):
    from suite.report import PublishError
    from suite.report import publish as pub

    monkeypatch.setattr(pub, "modified_files", lambda root=None: ["suite/run.py"])
    board = write_board(tmp_path / "a" / "leaderboard.json", grid())
    out = tmp_path / "results"
    with pytest.raises(PublishError, match=r"working tree is modified \(1 files, e.g. suite/run.py\)"):
        build_report(out, boards=(board,), publish=True)
    assert not out.exists()
    build_report(out, boards=(board,), publish=True, allow_dirty=True)
    assert "Published with --allow-dirty: the working tree is modified" in (out / "leaderboard.html").read_text()


def test_publish_never_publishes_smoke_records_nor_drops_published_ones_unasked(published, tmp_path):
    from suite.report import PublishError

    before = (published / "leaderboard.json").read_text()
    smoke = write_board(tmp_path / "s" / "leaderboard.json", [record(experiment="prune_ofa-smoke")])
    with pytest.raises(PublishError, match=r"it would drop 7 published records .* --replace") as e:
        build_report(published, boards=(smoke,), publish=True)
    assert (published / "leaderboard.json").read_text() == before
    assert (len(e.value.changes.added), len(e.value.changes.dropped)) == (0, 7)  # the smoke record is no candidate
    report, _ = build_report(published, boards=(smoke,), publish=True, replace=True)
    assert report.board["records"] == [] and report.smoke_left_out == 1


def test_publish_shows_what_it_adds_changes_drops_and_which_verdicts_change(published, tmp_path, capsys, monkeypatch):
    import re

    from suite.report import __main__ as cli

    r = grid()  # r[2], r[5]: the gmp 90% + KD cells, evidence of Prune OFA's claims
    changed = dict(r[0], command="python -m suite.run task=sst2 seed=42 train.lr=3e-5")
    new = write_board(tmp_path / "n" / "leaderboard.json", [changed, r[1], r[3], r[4], r[6], record(task="rte")])
    monkeypatch.setattr(cli, "RESULTS_DIR", published)
    monkeypatch.setattr(cli, "refresh_screenshots", lambda out: None)
    assert cli.main(["--publish", "--merge", str(new)]) == 2
    err = capsys.readouterr().err
    assert "1 records added, 1 changed, 2 dropped" in err and "sparq: error: --publish refused: it would drop 2" in err
    assert f"dropped: {r[2]['cell_id']} (Test CPU A" in err
    assert re.search(r"claim PO1\b.*-> (not run|absent)", err), err  # its evidence is gone
    assert cli.main(["--publish", "--replace", "--merge", str(new)]) == 0
    err = capsys.readouterr().err
    assert f"[sparq] published to {published}: 1 records added, 1 changed, 2 dropped" in err
    assert len(json.loads((published / "leaderboard.json").read_text())["records"]) == 6


def test_publish_diff_is_a_pure_function_of_two_boards():
    from suite.report import publish as pub

    old, new = grid(), grid()
    new[0] = dict(new[0], command="python -m suite.run seed=99")
    c = pub.changes(old, new[:-1] + [record(task="rte")], {"PO1": "holds", "PO2": "holds"},
                    {"PO1": "does not hold", "PO2": "holds", "S1": "holds"})
    assert (len(c.added), len(c.changed), len(c.dropped)) == (1, 1, 1)
    assert c.verdicts == [("PO1", "holds", "does not hold"), ("S1", "absent", "holds")]
    assert c.lines()[0] == "1 records added, 1 changed, 1 dropped; 2 claims change verdict"
