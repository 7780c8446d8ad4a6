"""One identity (suite.identity.config_hash): what defines a stage's output changes its id, nothing
else does. A changed data set gives a new cell id and a new teacher key (issue 17, case 1)."""

import shutil

import pytest

from suite.config import compose
from suite.identity import config_hash, identity
from suite.teacher import teacher_key
from suite.upstream.stage import upstream_cell_id


def _copy_sst2(source, tmp_path, name, flip=False):
    """A small SST-2 data dir from `source`; flip=True inverts every label (same files, same names)."""
    root = tmp_path / name / "glue" / "sst2"
    root.mkdir(parents=True)
    for split in ("train", "dev"):
        lines = (source / "glue" / "sst2" / f"{split}.tsv").read_text().splitlines()[:65]
        if flip:
            lines = lines[:1] + [f"{t}\t{1 - int(y)}" for t, y in (x.rsplit("\t", 1) for x in lines[1:])]
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path / name


@pytest.fixture
def _data(data_dir):
    return lambda tmp_path, name, flip=False: _copy_sst2(data_dir, tmp_path, name, flip)


@pytest.fixture
def cfg_of(tiny_model, tmp_path):
    def make(data_dir, *extra):
        return compose([f"model.name_or_path={tiny_model}", "model.name=tiny", "profile=smoke",
                        f"data_dir={data_dir}", *extra])
    return make


def test_changed_data_changes_cell_id_and_teacher_key(cfg_of, _data, tmp_path):
    a, flipped = _data(tmp_path, "a"), _data(tmp_path, "b", flip=True)
    base, other = cfg_of(a), cfg_of(flipped)
    assert config_hash(base) != config_hash(other)
    assert teacher_key(base) != teacher_key(other)
    kd = cfg_of(a, "distill=logits", "sparsity=gmp")
    assert teacher_key(kd) == teacher_key(base)  # a KD cell asks for the dense cell's teacher
    assert teacher_key(cfg_of(flipped, "distill=logits", "sparsity=gmp")) != teacher_key(kd)


def test_same_content_elsewhere_keeps_the_id(cfg_of, _data, tmp_path):
    a = _data(tmp_path, "a")
    copy = tmp_path / "elsewhere"
    shutil.copytree(a, copy)
    assert config_hash(cfg_of(a)) == config_hash(cfg_of(copy))  # paths are not identity
    assert config_hash(cfg_of(a)) == config_hash(cfg_of(a, "threads=1", "device=cpu", "progress=true",
                                                          "train.eval_batch_size=7", "force=true"))
    # the grid that asks for a cell does not change it: one cell, trained once
    assert config_hash(cfg_of(a, "experiment_name=budget_curves")) == config_hash(cfg_of(a, "experiment_name=x"))


def test_neutral_defaults_of_new_options_keep_old_ids(cfg_of, _data, tmp_path, monkeypatch):
    from suite import identity as ident

    a = _data(tmp_path, "a")
    before = config_hash(cfg_of(a))
    monkeypatch.setitem(ident.NEUTRAL_DEFAULTS, "train.lr", cfg_of(a).train.lr)
    assert config_hash(cfg_of(a)) != before  # at its neutral value the option leaves the id
    assert config_hash(cfg_of(a, "train.lr=1e-3")) != config_hash(cfg_of(a))  # any other value is in it


def test_what_defines_the_output_changes_it(cfg_of, _data, tmp_path, tiny_model):
    a = _data(tmp_path, "a")
    base = cfg_of(a)
    for extra in (["seed=1"], ["sparsity=gmp"], ["train.lr=1e-3"], ["quant=ptq"], ["profile.budget=2"]):
        assert config_hash(cfg_of(a, *extra)) != config_hash(base), extra
    assert config_hash(cfg_of(a, "profile.budget=1")) == config_hash(base)
    # the model's weights, not its path
    (tiny_model / "model.safetensors").is_file() or pytest.skip("tiny model stores no safetensors")
    ident = identity(base)["inputs"]
    assert set(ident) == {"data", "model", "code"} and ident["model"]["weights"]
    assert set(ident["data"]["files"]) == {"glue/sst2/train.tsv", "glue/sst2/dev.tsv"}


def test_method_code_version_is_part_of_the_id(cfg_of, _data, tmp_path, monkeypatch):
    from suite.prune.gmp import GmpConfig

    a = _data(tmp_path, "a")
    before = config_hash(cfg_of(a, "sparsity=gmp"))
    monkeypatch.setattr(GmpConfig, "version", GmpConfig.version + 1)
    assert config_hash(cfg_of(a, "sparsity=gmp")) != before


def test_upstream_id_reads_the_corpus(cfg_of, _data, tmp_path):
    a, flipped = _data(tmp_path, "a"), _data(tmp_path, "b", flip=True)
    up = ["stage=upstream", "sparsity=gmp", "upstream.tasks=[sst2]"]
    assert upstream_cell_id(cfg_of(a, *up)) == upstream_cell_id(cfg_of(a, *up, "upstream.lr=1e-4"))
    (flipped / "glue" / "sst2" / "train.tsv").write_text("sentence\tlabel\nother text\t1\n")
    assert upstream_cell_id(cfg_of(a, *up)) != upstream_cell_id(cfg_of(flipped, *up))
