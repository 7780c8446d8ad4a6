"""Export round trips (suite/export, kernels.bundle): a compressed cell's student, written by the cell
as run artifacts and taken out of the store by `python -m suite.export`, reloads into the model the
cell evaluated: bit for bit from safetensors (the torch model) and from the packed file (the packed
kernels), within int8 rounding from ONNX under ONNX Runtime. For a 2:4 + 4-bit cell, a 90% block
cell and a PTQ cell on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from suite.config import compose

CELLS = {"nm24_w4": ["sparsity=nm", "sparsity.every=1", "quant=qat4"],
         "block90": ["sparsity=block", "sparsity.target=0.9", "sparsity.every=1"],
         "ptq": ["quant=ptq"]}
COMMON = ["profile=smoke", "progress=false", "measure.packed_eval=true", "profile.eval_samples=48", "task=sst2", "experiment_name=export"]


@pytest.fixture(scope="module")
def cells(tiny_model, data_dir):
    """name -> (overrides, CellResult), each cell run once."""
    from suite.run import run_cell

    out = {}
    for name, extra in CELLS.items():
        overrides = [f"model.name_or_path={tiny_model}", "model.name=tiny", *COMMON, *extra]
        out[name] = (overrides, run_cell(compose(overrides)))
        assert out[name][1].status == "FINISHED"
    return out


def _eval_set(cfg):
    from suite.models import load_tokenizer
    from suite.runtime import subset
    from suite.tasks import TASK_KINDS, load_task_data

    kind = TASK_KINDS.get(cfg.task.kind)
    tokenizer = load_tokenizer(cfg.model)
    eval_ds = subset(load_task_data(cfg.task, cfg.data_dir).eval, cfg.profile.eval_samples, cfg.seed)
    return kind, eval_ds, kind.featurize(eval_ds, tokenizer, cfg.task, train=False), kind.collator(tokenizer)


class _OrtModule(torch.nn.Module):
    """An ONNX Runtime session behind the keyword interface `suite.evaluation.predict` calls."""

    def __init__(self, sess, outputs):
        super().__init__()
        self.sess, self.outputs = sess, outputs

    def forward(self, **batch):
        from suite.export.onnx import run

        return dict(zip(self.outputs, (torch.from_numpy(a) for a in run(self.sess, batch)), strict=True))


def _eval_primary(model, cfg) -> float:
    from suite.evaluation import evaluate_model

    kind, eval_ds, features, collate = _eval_set(cfg)
    return evaluate_model(model, kind, cfg.task, eval_ds, features, collate, 16, torch.device("cpu"))["eval_primary"]


def _export(run_id, fmt, out) -> int:
    from suite.export.__main__ import main

    return main([run_id, "--format", fmt, "--out", str(out)])


@pytest.mark.parametrize("name", list(CELLS))
def test_exported_student_reloads_to_the_cells_own_predictions(cells, name, tmp_path, capsys):
    import kernels
    from suite.export import load, verify

    overrides, result = cells[name]
    cfg, m = compose(overrides), result.metrics
    for fmt in ("safetensors", "packed", "onnx"):
        assert _export(result.run_id, fmt, tmp_path / fmt) == 0, capsys.readouterr().err
    assert "check on 8 eval examples" in capsys.readouterr().out

    # safetensors: the torch model the cell evaluated, bit for bit, and its eval metric
    st = load(tmp_path / "safetensors", "safetensors")
    assert verify(tmp_path / "safetensors", "safetensors", st)["max_abs_diff"] == 0.0
    assert _eval_primary(st, cfg) == m["eval_primary"]
    # packed: the packed model of the cell's packed eval, bit for bit; the fused (timed) one agrees
    packed = load(tmp_path / "packed", "packed")
    assert verify(tmp_path / "packed", "packed", packed)["max_abs_diff"] == 0.0
    assert _eval_primary(packed, cfg) == m["eval_primary_packed"]
    ready = kernels.load_model(tmp_path / "packed")
    assert any(type(x).__name__ == "SparseInt8Linear" for x in ready.modules())
    res = verify(tmp_path / "packed", "packed", ready)
    assert res["max_abs_diff"] <= 1e-5 * max(1.0, res["max_abs_output"]) and res["argmax_agreement"] == 1.0
    # onnx under ONNX Runtime: within int8 rounding of the cell's own outputs
    manifest = json.loads((tmp_path / "onnx" / "sparq.json").read_text())
    entry = manifest["formats"]["onnx"]
    assert entry["quant"] == ("none" if name == "block90" else "qdq_int8")
    sess = load(tmp_path / "onnx", "onnx")
    res = verify(tmp_path / "onnx", "onnx", sess)
    assert res["max_abs_diff"] <= 0.05 * res["max_abs_output"] + 1e-6
    if entry["quant"] == "qdq_int8":
        import onnx

        graph = onnx.load(str(tmp_path / "onnx" / entry["file"])).graph
        int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2}
        weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int8]
        assert entry["weights_int8"] == len(weight_dq) == 12  # every encoder Linear of the 2-layer model
        fp32_encoder = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT
                        and len(t.dims) == 2 and ".encoder." in t.name]
        assert not fp32_encoder  # the encoder's weights are stored int8
    assert abs(_eval_primary(_OrtModule(sess, entry["outputs"]), cfg) - m["eval_primary"]) \
        <= 100.0 * (1 - res["argmax_agreement"]) + 100.0 / 48 * 2


def test_artifacts_of_a_cell_and_their_sizes(cells):
    """The run holds one student bundle; the packed file is the packed encoder (kernels bytes)."""
    import mlflow

    _, result = cells["block90"]
    names = {a.path.rsplit("/", 1)[-1] for a in mlflow.MlflowClient().list_artifacts(result.run_id, "student")}
    assert {"sparq.json", "model.safetensors", "encoder.sparqpk", "model.onnx", "check.safetensors",
            "config.json", "tokenizer.json"} <= names
    m = result.metrics
    assert m["export_bytes_packed"] < 0.5 * m["encoder_bytes_dense_fp32"]  # 90% block, int8 values
    tags = mlflow.get_run(result.run_id).data.tags
    assert tags["export_formats"] == "safetensors,packed,onnx" and "export_error" not in tags


def test_dense_cells_export_nothing_and_the_cli_says_so(tiny_model, run_cell, tmp_path, capsys):
    result = run_cell([f"model.name_or_path={tiny_model}", "model.name=tiny", *COMMON, "seed=3"])
    assert "export_bytes_safetensors" not in result.metrics
    capsys.readouterr()
    assert _export(result.run_id, "packed", tmp_path / "x") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparq: error: RUN_ID:") and "no exported student" in err and "\n" not in err
    assert _export("0" * 32, "packed", tmp_path / "y") == 2
    assert "no run" in capsys.readouterr().err


def test_a_mid_rise_cell_skips_onnx_and_records_why(tiny_model, run_cell, tmp_path, capsys):
    result = run_cell([f"model.name_or_path={tiny_model}", "model.name=tiny", *COMMON, "quant=qat",
                       "quant.zero_preserving=false", "export.formats=[onnx]"])
    import mlflow

    tags = mlflow.get_run(result.run_id).data.tags
    assert "mid-rise" in tags["export_skipped_onnx"]
    assert _export(result.run_id, "onnx", tmp_path / "o") == 2
    assert "has no onnx export" in capsys.readouterr().err


def test_an_altered_bundle_is_refused(cells, tmp_path):
    import kernels

    _, result = cells["ptq"]
    assert _export(result.run_id, "packed", tmp_path / "p") == 0
    rest = tmp_path / "p" / "rest.safetensors"
    blob = bytearray(rest.read_bytes())
    blob[-3] ^= 0xFF
    rest.write_bytes(bytes(blob))
    with pytest.raises(kernels.BundleError, match="sha256 differs"):
        kernels.load_model(tmp_path / "p")
