"""Faults tier: `python -m suite.sync` uploads a spooled record exactly once. The spooled run's id
is the key (a second sync of the same file is a no-op that says so), the file is checked before
any run is created, a failure leaves no RUNNING run, and the file goes only once its run is
FINISHED. Spool files made by hand (the layout of suite/recorded.py), a scratch SQLite store."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from board_support import record
from mlflow.tracking import MlflowClient

from suite import sync

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('sync-store') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # the tables, once
    return uri


def spooled(spool: Path, experiment: str, **change) -> Path:
    """A spool file of a run the store never saw (its server died before the run was made there)."""
    run_id = uuid.uuid4().hex
    rec = dict(record(experiment=experiment), run_id=run_id)
    data = {"tracking_uri": "http://127.0.0.1:9", "experiment": experiment, "run_id": run_id,
            "cell_id": rec["cell_id"], "kind": "cell", "tags": {"stage": "finetune"},
            "metrics": {"eval_primary": 85.0, "eval_accuracy": 0.85}, "record": rec, "run_name": "cell",
            "open_tags": {"cell_id": rec["cell_id"], "kind": "cell"}, "params": {"seed": "42"},
            "config_yaml": "seed: 42\n", "environment": {"python": "3.11"}, **change}
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"{run_id}.json"
    path.write_text(json.dumps(data))
    return path


def _runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_the_same_spool_file_synced_twice_is_one_run(uri, tmp_path, capsys):
    path = spooled(tmp_path / "spool", "sync-twice-quick")
    keep = tmp_path / "copy.json"
    shutil.copy(path, keep)
    assert sync.main(["--spool", str(path.parent), "--tracking-uri", uri]) == 0 and not path.exists()
    shutil.copy(keep, path)  # the same file again (a backup restored, a second machine's copy)
    assert sync.main(["--spool", str(path.parent), "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"{path.name}: already uploaded (run " in out and "nothing to do" in out
    (run,) = _runs(uri, "sync-twice-quick")
    assert run.info.status == "FINISHED" and run.data.tags["spooled_run_id"] == path.stem
    assert not path.exists()


@pytest.mark.parametrize("case", ["invalid record", "metric not a number", "truncated", "newer schema"])
def test_a_bad_spool_file_creates_nothing_and_is_kept(case, uri, tmp_path, capsys):
    experiment = f"sync-bad-{case.replace(' ', '-')}-quick"
    change = {"invalid record": {"record": dict(record(), axes={"task": "sst2"})},
              "metric not a number": {"metrics": {"eval_primary": "n/a"}},
              "newer schema": {"record": dict(record(), schema_version=2)}}.get(case, {})
    path = spooled(tmp_path / "spool", experiment, **change)
    if case == "truncated":
        path.write_text(path.read_text()[:200])
    for _ in range(2):  # a retry is no different
        assert sync.main(["--spool", str(path.parent), "--tracking-uri", uri]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith(f"sparq: error: {path.name}: not uploaded (") for line in err)
    assert {"invalid record": "record: axes.model: Field required", "metric not a number": "metric 'eval_primary'",
            "truncated": "not valid JSON", "newer schema": "schema_version 2 is newer"}[case] in err[0]
    assert path.exists() and _runs(uri, experiment) == []


def test_a_store_failing_mid_upload_leaves_no_running_run_and_keeps_the_file(uri, tmp_path, monkeypatch):
    path = spooled(tmp_path / "spool", "sync-dies-quick")

    def dies(self, run_id, *a, **k):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(MlflowClient, "log_dict", dies)
    assert sync.main(["--spool", str(path.parent), "--tracking-uri", uri]) == 1
    assert _runs(uri, "sync-dies-quick") == [] and path.exists()  # the run it made is deleted again
    monkeypatch.undo()
    assert sync.main(["--spool", str(path.parent), "--tracking-uri", uri]) == 0
    (run,) = _runs(uri, "sync-dies-quick")
    assert run.info.status == "FINISHED" and not path.exists()


def test_the_file_goes_only_once_its_run_is_finished(uri, tmp_path, monkeypatch):
    path = spooled(tmp_path / "spool", "sync-unfinished-quick")
    monkeypatch.setattr(MlflowClient, "set_terminated", lambda self, run_id, status=None, end_time=None: None)
    assert sync.main(["--spool", str(path.parent), "--tracking-uri", uri]) == 1
    assert path.exists() and all(r.info.status != "RUNNING" for r in _runs(uri, "sync-unfinished-quick"))
