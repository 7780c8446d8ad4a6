"""Faults tier: one error form, and regression labels checked before a run opens.

Every entry point (suite.run, suite.report, suite.sync, suite.grid, kernels.bench, reproduce.sh)
turns an expected failure (bad input, an OSError on its own files) into one `sparq: error:` line
and a non-zero exit, with a traceback only under SPARQ_DEBUG=1; a grid with a bad override stops
before its report. STS-B labels that are not finite or outside task.label_range are refused with
file and line before any run is opened."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from board_support import grid, write_board

from suite.errors import SparqError

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parent.parent
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"


def _n_runs() -> int:
    return sum(len(mlflow.search_runs([e.experiment_id], output_format="list"))
               for e in mlflow.search_experiments())


def _stsb(root: Path, dev_label: str) -> Path:
    rows = [f"{i}\tmain\tf\t2012\t{i}\tnone\tnone\tA man plays {i}.\tA man is playing {i}.\t{(i % 6) * 0.8:.1f}\n"
            for i in range(12)]
    (root / "glue" / "stsb").mkdir(parents=True)
    (root / "glue" / "stsb" / "train.tsv").write_text(STSB_HEADER + "".join(rows))
    bad = "0\tmain\tf\t2012\t0\tnone\tnone\tTwo dogs run.\tDogs are running.\t" + dev_label + "\n"
    (root / "glue" / "stsb" / "dev.tsv").write_text(STSB_HEADER + "".join(rows[:3]) + bad + "".join(rows[3:6]))
    return root


@pytest.mark.parametrize("label, why", [("nan", "label 'nan' is not a finite number"),
                                        ("inf", "label 'inf' is not a finite number"),
                                        ("5.5", "label 5.5 outside task.label_range [0, 5]"),
                                        ("-0.1", "label -0.1 outside task.label_range [0, 5]")])
def test_regression_labels_out_of_range_or_not_finite_are_refused_before_a_run(label, why, tmp_path, smoke_overrides,
                                                                              run_cell):
    root = _stsb(tmp_path / label, label)
    before = _n_runs()
    with pytest.raises(SparqError) as e:
        run_cell(smoke_overrides + ["task=stsb", f"data_dir={root}", "experiment_name=faults-labels"])
    assert str(e.value) == f"{root / 'glue' / 'stsb' / 'dev.tsv'}:5: {why}"
    assert _n_runs() == before


def test_label_range_is_checked_as_config():
    from suite.config import compose

    assert compose(["task=stsb"]).task.label_range == [0.0, 5.0]
    with pytest.raises(SparqError, match=r"task.label_range: must be \[low, high\]"):
        compose(["task=stsb", "task.label_range=[5.0,0.0]"])


# ------------------------------------------------------------------ suite.report

def _report_main(tmp_path, *extra):
    from suite.report.__main__ import main

    board = write_board(tmp_path / "b" / "leaderboard.json", grid()[:2])
    return main(["--merge", str(board), "--out", str(tmp_path / "out"), *extra])


def test_report_into_an_unwritable_folder_is_one_line(tmp_path, capsys, monkeypatch):
    import tempfile

    def refused(*a, dir=None, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    assert _report_main(tmp_path) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"sparq: error: Permission denied: {tmp_path}"
    monkeypatch.setenv("SPARQ_DEBUG", "1")
    with pytest.raises(PermissionError):
        _report_main(tmp_path)


def test_report_on_a_full_disk_is_one_line_and_keeps_the_old_report(tmp_path, capsys, monkeypatch):
    assert _report_main(tmp_path) == 0
    before = (tmp_path / "out" / "leaderboard.html").read_text()
    write_text = Path.write_text

    def full(self, text, *a, **k):
        if self.name == "leaderboard.html":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_text(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    assert _report_main(tmp_path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sparq: error: No space left on device: ") and "Traceback" not in "\n".join(err)
    monkeypatch.undo()
    assert (tmp_path / "out" / "leaderboard.html").read_text() == before


def test_report_of_a_store_that_does_not_exist_is_one_line_and_creates_none(tmp_path, capsys):
    from suite.report.__main__ import main

    db = tmp_path / "none" / "mlflow.db"
    assert main(["--tracking-uri", f"sqlite:///{db}", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sparq: error: tracking URI sqlite:///{db}: no MLflow store at {db}; run a cell first, or "
                   "point MLFLOW_TRACKING_URI (or --tracking-uri) at your store"]
    assert not db.parent.exists() and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ the other entry points

def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in lines if line.startswith("sparq: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def _python(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_run_with_an_unusable_cache_is_one_line(tmp_path, smoke_overrides):
    cache = tmp_path / "cache-is-a-file"
    cache.write_text("")
    proc = _python("-m", "suite.run", *smoke_overrides, "task=sst2", "experiment_name=faults-cache", "force=true",
                   f"hydra.run.dir={tmp_path / 'hydra'}", env={"SPARQ_CACHE_DIR": str(cache)})
    assert proc.returncode != 0
    line = _one_error_line(proc)
    assert str(cache) in line and ("Not a directory" in line or "File exists" in line), line


def test_grid_with_a_misspelt_override_stops_before_any_cell(tmp_path):
    proc = _python("-m", "suite.run", "-m", "+experiment=prune_ofa", "profile=smoke", "sparsity.targt=0.9",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 2
    assert "targt" in _one_error_line(proc)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="reproduce.sh needs ./reproduce.sh setup")
def test_reproduce_all_with_a_bad_override_stops_before_its_report(tmp_path):
    env = {**os.environ, "SPARQ_REPORT_DIR": str(tmp_path / "report"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    proc = subprocess.run(["bash", str(ROOT / "reproduce.sh"), "all", "profile=smoke", "sparsity.targt=0.9"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "targt" in _one_error_line(proc)
    assert not (tmp_path / "report").exists() and "wrote" not in proc.stderr


def test_grid_summary_of_a_missing_sweep_is_one_line(tmp_path, capsys):
    from suite.grid import main

    assert main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"sparq: error: {tmp_path / 'nope'}: not a sweep dir (no .grid/ with " \
                                              "its plan and cell records)"
    assert main(["--estimate", "prune_of"]) == 2
    assert "unknown experiment 'prune_of'" in capsys.readouterr().err


@pytest.mark.parametrize("args, why", [(["--shapes", "768x"], "--shapes: '768x' is not KxN"),
                                       (["--rounds", "0"], "--rounds, --repeats and --threads must be >= 1"),
                                       (["--sparsity", "90%"], "--sparsity: '90%' is not 2:4"),
                                       (["--bogus"], "unrecognized arguments: --bogus")])
def test_kernel_bench_bad_options_are_one_line(args, why, capsys):
    from kernels.bench.__main__ import cli

    assert cli(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sparq: error: ") and why in err[0]


def test_sync_and_report_usage_errors_are_one_line(capsys):
    from suite.report.__main__ import main as report
    from suite.sync import main as sync

    assert sync(["--bogus"]) == 2 and report(["--publish", "--out", "elsewhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sparq: error: unrecognized arguments: --bogus",
                   "sparq: error: --publish writes results/; leave out --out"]
