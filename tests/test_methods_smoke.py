"""Every conf/sparsity|quant|distill YAML composes and runs a smoke cell on the tiny model;
bad values fail at validation with one ConfigError line; shrunk baselines match sizes."""

from pathlib import Path

import pytest

from suite.config import compose
from suite.errors import ConfigError

CONF = Path(__file__).resolve().parent.parent / "conf"


@pytest.mark.parametrize("group", ["sparsity", "quant", "distill"])
def test_every_yaml_composes(group):
    from suite.distill import DISTILLERS
    from suite.prune import PRUNERS
    from suite.quant import QUANTIZERS

    registry = {"sparsity": PRUNERS, "quant": QUANTIZERS, "distill": DISTILLERS}[group]
    for path in sorted((CONF / group).glob("*.yaml")):
        section = getattr(compose([f"{group}={path.stem}"]), group)
        assert type(section) is registry.config_class(section.method)  # typed by its registered class


# one smoke cell per non-default YAML, combined so that each runs once
CELLS = [
    ["sparsity=gmp", "quant=ptq", "quant.calibration=entropy"],
    ["sparsity=block", "quant=qat", "distill=hidden"],
    ["sparsity=nm", "quant=qat4", "distill=logits"],
    ["quant=ptq", "quant.fp32_source=teacher", "quant.calibration=percentile"],
    ["model.shrink_keep_every=2", "model.shrink_intermediate=16", "distill=hidden"],
]


@pytest.mark.parametrize("extra", CELLS, ids=lambda e: "+".join(x.split("=")[1] for x in e[:2]))
def test_smoke_cell(run_cell, smoke_overrides, extra):
    result = run_cell(smoke_overrides + extra + ["sparsity.every=1"] * any("sparsity=" in x for x in extra))
    assert result.status == "FINISHED"
    m = result.metrics
    for key in ("eval_primary", "sparsity_measured", "compression_nominal", "compression_packed",
                "encoder_bytes_packed", "encoder_bytes_dense_fp32"):
        assert key in m
    assert m["encoder_bytes_packed"] > 0
    if "sparsity=gmp" in extra or "sparsity=block" in extra:
        assert m["sparsity_measured"] == pytest.approx(0.9, abs=0.01)  # survives PTQ / QAT
    if "sparsity=nm" in extra:
        assert m["sparsity_measured"] >= 0.5 - 1e-9  # 2:4 survives 4-bit QAT
        assert m["compression_nominal"] >= 16.0 - 1e-6
    if "quant=ptq" in extra or any("qat" in x for x in extra):
        assert m["encoder_bytes_packed"] < m["encoder_bytes_dense_fp32"] / 2


BAD = [
    (["sparsity=gmp", "sparsity.target=1.0"], "sparsity.target"),
    (["sparsity=gmp", "sparsity.target=-0.1"], "sparsity.target"),
    (["sparsity=block", "sparsity.target=1.5"], "sparsity.target"),
    (["sparsity=nm", "sparsity.n=4", "sparsity.m=4"], "sparsity.n"),
    (["sparsity=nm", "sparsity.n=3", "sparsity.m=2"], "sparsity.n"),
    (["sparsity=gmp", "sparsity.scope=row"], "sparsity.scope"),
    (["sparsity=gmp", "sparsity.schedule=linear"], "sparsity.schedule"),
    (["quant=qat", "quant.weight_bits=16"], "quant.weight_bits"),
    (["quant=qat", "quant.weight_bits=32"], "quant.weight_bits"),
    (["quant=qat", "quant.act_bits=2"], "quant.act_bits"),
    (["quant=ptq", "quant.weight_bits=6"], "quant.weight_bits"),
    (["quant=ptq", "quant.calibration=mse"], "quant.calibration"),
    (["quant=ptq", "quant.granularity=group"], "quant.granularity"),
    (["quant=qat", "quant.scale_init=random"], "quant.scale_init"),
    (["quant=fp32", "quant.weight_bits=8"], "quant.weight_bits"),
    (["distill=logits", "distill.temperature=0"], "distill.temperature"),
    (["sparsity=gmp", "quant=ptq", "quant.fp32_source=teacher"], "quant.fp32_source"),
]


@pytest.mark.parametrize("overrides,key", BAD, ids=lambda x: str(x))
def test_bad_values_rejected(overrides, key):
    with pytest.raises(ConfigError) as e:
        compose(overrides)
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


def test_shrink_matching_size():
    from suite.models.shrink import encoder_linear_params, matching_shrink

    keep, width = matching_shrink(6, 384, 1536, 0.9)
    kept = 6 // keep
    assert encoder_linear_params(kept, 384, width) == pytest.approx(0.1 * encoder_linear_params(6, 384, 1536),
                                                                     rel=1e-3)
    cfg = compose(["model=minilm_small"])
    assert encoder_linear_params(6 // cfg.model.shrink_keep_every, 384, cfg.model.shrink_intermediate) \
        == pytest.approx(0.1 * encoder_linear_params(6, 384, 1536), rel=1e-3)


def test_shrink_surgery(tiny_model):
    from transformers import AutoModelForSequenceClassification

    from suite.config import ModelConfig
    from suite.models.shrink import encoder_layers, shrink

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model), num_labels=2)
    out = shrink(model, ModelConfig(name="t", name_or_path=str(tiny_model), shrink_keep_every=2,
                                    shrink_intermediate=16))
    layers = encoder_layers(out)
    assert len(layers) == 1 and out.config.num_hidden_layers == 1
    assert layers[0].intermediate.dense.out_features == 16 and layers[0].output.dense.in_features == 16
