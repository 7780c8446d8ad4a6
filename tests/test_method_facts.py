"""Methods answer for their own facts (pattern, packed format, bytes, density, label), an unpackable
method is refused at config time, and a method added as one YAML (sparsity=nm48) runs end to end."""

import json
from dataclasses import dataclass

import pytest
import torch

from suite.config import compose
from suite.errors import ConfigError
from suite.paths import CONF_DIR, RESULTS_DIR
from suite.prune import PRUNERS, SparsityConfig
from suite.prune import masks as M

SPARSITY_OPTIONS = sorted(p.stem for p in (CONF_DIR / "sparsity").glob("*.yaml"))


@pytest.mark.parametrize("option", SPARSITY_OPTIONS)
def test_every_sparsity_option_answers_for_itself(option):
    from kernels.formats import FORMATS

    s = compose([f"sparsity={option}"]).sparsity
    assert isinstance(s, SparsityConfig)
    assert s.packed_format() in FORMATS
    assert 0.0 < s.nominal_density() <= 1.0 and s.label() and s.pattern_label()
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    if s.prunes:
        w = w * M.compute_masks({"w": w}, s.target, s.pattern, block=getattr(s, "block", 4),
                                n=getattr(s, "n", 2), m=getattr(s, "m", 4))["w"]
        assert s.layer_value_bytes(w, 8) < 16 * 32  # the pattern pays for itself at int8
    assert s.layer_format(w) in FORMATS


def test_an_unpackable_method_is_refused_before_anything_runs(monkeypatch):
    @dataclass
    class NoFormat(SparsityConfig):
        method: str = "noformat"
        target: float = 0.5

    monkeypatch.setitem(PRUNERS._items, "noformat", lambda cfg, ctx: [])
    monkeypatch.setitem(PRUNERS._configs, "noformat", NoFormat)
    with pytest.raises(ConfigError, match="sparsity.method: 'noformat' names no packed format"):
        compose(["sparsity.method=noformat"])


def test_nm48_is_one_yaml_and_runs_end_to_end(run_cell, smoke_overrides, data_dir):
    import jsonschema
    import mlflow

    res = run_cell([*smoke_overrides, "sparsity=nm48", f"data_dir={data_dir}"])
    assert res.status == "FINISHED"
    rec = mlflow.artifacts.load_dict(f"runs:/{res.run_id}/result.json")
    jsonschema.validate(rec, json.loads((RESULTS_DIR / "cell_record.schema.json").read_text()))
    axes = rec["axes"]
    assert (axes["sparsity_method"], axes["sparsity_pattern"], axes["sparsity_label"]) == ("nm", "4:8", "nm 4:8")
    assert rec["compression"]["sparsity_measured"] == pytest.approx(0.5)  # dims are multiples of 8
    assert rec["compression"]["encoder_bytes_packed"] < rec["compression"]["encoder_bytes_dense_fp32"]
