"""`profile=` means what it says for every experiment: a command-line profile replaces the grid's
whole profile (no experiment keeps its own sizes on top of it), and reproduce.sh refuses an
unknown profile in one line listing conf/profile/*.yaml."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from suite.config import compose

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
PROFILES = sorted(p.stem for p in (ROOT / "conf" / "profile").glob("*.yaml"))


def profile_file(name: str) -> dict:
    return yaml.safe_load((ROOT / "conf" / "profile" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_command_line_profile_replaces_the_grid_profile(experiment, profile):
    cfg = compose([f"+experiment={experiment}", f"profile={profile}"])
    got = dataclasses.asdict(cfg.profile)
    want = profile_file(profile)
    assert {k: got[k] for k in want} == want, f"{experiment} keeps its own profile keys over profile={profile}"


def test_the_quick_grids_keep_their_sizes_and_the_main_job_its_own():
    grid = compose(["+experiment=prune_ofa"]).profile
    assert (grid.name, grid.train_samples, grid.eval_samples) == ("quick", 2000, None)  # whole dev set
    main = compose([]).profile
    assert (main.name, main.train_samples, main.eval_samples) == ("quick", 8000, None)
    transfer = compose(["+experiment=prune_ofa_transfer"]).profile
    assert (transfer.name, transfer.train_samples, transfer.eval_samples) == ("quick", 8000, None)


def test_no_experiment_sets_profile_keys():
    for path in (ROOT / "conf" / "experiment").rglob("*.yaml"):
        doc = yaml.safe_load(path.read_text()) or {}
        assert "profile" not in doc, f"{path.relative_to(ROOT)}: put sizes in a conf/profile option"


def test_reproduce_sh_rejects_an_unknown_profile_listing_the_valid_ones(tmp_path):
    env = {**os.environ, "SPARQ_SKIP_SETUP": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    for args in (["prune_ofa", "profile=huge"], ["profile=huge"]):
        proc = subprocess.run(["bash", str(ROOT / "reproduce.sh"), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            f"sparq: error: profile: unknown option 'huge'; allowed: {', '.join(PROFILES)}")
    assert not (tmp_path / "m.db").exists()
