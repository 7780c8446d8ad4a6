"""Prune OFA upstream stage + pattern-locked transfer, on the tiny random BERT (seconds)."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import mlflow
import pytest
import torch

UPSTREAM = ["sparsity=gmp", "sparsity.target=0.9", "sparsity.every=1", "upstream.max_sentences=300",
            "upstream.batch_size=4", "upstream.max_length=32", "experiment_name=ofa_test"]


def _runs(experiment: str, stage: str):
    exp = mlflow.get_experiment_by_name(experiment)
    return mlflow.search_runs([exp.experiment_id], filter_string=f"tags.stage = '{stage}'", output_format="list")


@pytest.fixture(scope="module")
def upstream(tiny_model, data_dir):
    """Run the upstream cell once (per module) with every open() recorded: (result, opened paths)."""
    from suite.config import compose
    from suite.run import run_cell

    opened: list[str] = []
    real_open = builtins.open

    def recording_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    overrides = [f"model.name_or_path={tiny_model}", "model.name=tiny", "profile=smoke", "progress=false"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", recording_open)
        result = run_cell(compose(overrides + UPSTREAM + ["stage=upstream"]))
    return result, opened


def test_upstream_reads_only_train_splits(upstream, data_dir):
    from suite.upstream.corpus import eval_files

    result, opened = upstream
    data_reads = {str(Path(p).resolve().relative_to(data_dir)) for p in opened
                  if Path(p).resolve().is_relative_to(data_dir)}
    assert {"glue/sst2/train.tsv", "glue/cola/train.tsv", "glue/mrpc/train.tsv"} <= data_reads
    assert not any("dev" in p for p in data_reads), data_reads
    assert not data_reads & eval_files()
    assert result.status == "FINISHED"
    run = _runs("ofa_test-smoke", "upstream")[0]
    files = json.loads(run.data.tags["corpus_files"])
    assert files and not any("dev" in f for f in files)
    assert run.data.tags["mlm_head"] == "fresh" and run.data.params["stage"] == "upstream"
    assert run.data.tags["cell_id"] == result.cell_id
    assert run.data.metrics["sparsity_measured"] == pytest.approx(0.9, abs=0.01)
    assert run.data.metrics["upstream_mlm_loss"] > 0 and run.data.metrics["corpus_lines"] == 300


def test_transfer_masks_bit_identical(upstream, smoke_overrides, run_cell, monkeypatch):
    """Every transfer run keeps the upstream zeros exactly: same mask_sha256, same zero positions."""
    import suite.evaluation
    from suite.config import compose
    from suite.upstream.stage import find_entry

    seen = {}
    real_eval = suite.evaluation.evaluate_with_outcomes

    def spy(model, *args, **kwargs):
        prefix = model.base_model_prefix + "."
        seen["zeros"] = {n[len(prefix):]: (m.weight == 0).cpu() for n, m in model.named_modules()
                         if n.startswith(prefix) and n[len(prefix):] in entry_masks}
        return real_eval(model, *args, **kwargs)

    monkeypatch.setattr(suite.evaluation, "evaluate_with_outcomes", spy)
    result, _ = upstream
    transfer = smoke_overrides + UPSTREAM + ["stage=transfer"]
    entry = find_entry(compose(transfer))
    assert entry.cell_id == result.cell_id
    entry_masks = entry.masks()
    for extra in (["task=sst2"], ["task=mrpc", "distill=logits"], ["task=cola", "quant=qat"]):
        r = run_cell(transfer + extra)
        assert r.status == "FINISHED", extra
        run = mlflow.get_run(r.run_id)
        assert run.data.tags["upstream_cell_id"] == entry.cell_id
        assert run.data.tags["mask_sha256"] == entry.mask_sha256
        assert run.data.tags["stage"] == "transfer"
        assert run.data.metrics["sparsity_measured"] == pytest.approx(0.9, abs=0.01)
        assert set(seen["zeros"]) == set(entry_masks)
        for name, mask in entry_masks.items():
            assert torch.equal(seen["zeros"][name], ~mask), (extra, name)
    # the upstream was trained once and recorded once, however many transfers used it
    assert len(_runs("ofa_test-smoke", "upstream")) == 1
    assert run_cell(smoke_overrides + UPSTREAM + ["stage=upstream"]).status == "SKIPPED"


def test_every_run_writes_a_valid_record(upstream):
    """The upstream run and the transfer cells each log result.json, a CellRecord of their kind."""
    import jsonschema

    from suite.paths import RESULTS_DIR

    schema = json.loads((RESULTS_DIR / "cell_record.schema.json").read_text())
    exp = mlflow.get_experiment_by_name("ofa_test-smoke")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    kinds = set()
    for run in runs:
        rec = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/result.json")
        jsonschema.validate(rec, schema)
        assert rec["cell_id"] == run.data.tags["cell_id"] and rec["run_id"] == run.info.run_id
        kinds.add(rec["kind"])
        if rec["kind"] == "upstream":
            assert rec["axes"]["task"] == "mlm" and rec["data"]["files"]
            assert all("dev" not in f for f in rec["data"]["files"])
    assert kinds == {"upstream", "cell"}


def test_finetune_cell_ids_unchanged(smoke_overrides):
    from suite import tracking
    from suite.config import compose

    cfg = compose(smoke_overrides)
    assert "stage" not in tracking.config_dict(cfg) and "upstream" not in tracking.config_dict(cfg)
    assert tracking.cell_id(compose(smoke_overrides + ["upstream.steps=7"])) == tracking.cell_id(cfg)


def test_stage_config_errors(smoke_overrides):
    from suite.config import compose
    from suite.errors import ConfigError

    with pytest.raises(ConfigError, match="stage"):
        compose(smoke_overrides + ["stage=pretrain"])
    with pytest.raises(ConfigError, match="sparsity"):
        compose(smoke_overrides + ["stage=upstream"])  # dense: nothing to prune
    with pytest.raises(ConfigError, match="upstream.corpus"):
        compose(smoke_overrides + ["stage=upstream", "sparsity=gmp", "upstream.corpus=web"])


def test_upstream_ref_missing_is_one_clear_error(smoke_overrides, run_cell):
    from suite.errors import SparqError

    with pytest.raises(SparqError, match="upstream.ref"):
        run_cell(smoke_overrides + ["stage=transfer", "upstream.ref=0123456789abcdef", "experiment_name=ofa_test"])


def test_corpus_refuses_eval_files(data_dir, tmp_path):
    from suite.errors import SparqError
    from suite.upstream.config import UpstreamConfig
    from suite.upstream.corpus import corpus_files, load_corpus

    found, skipped = corpus_files(UpstreamConfig(), str(data_dir))
    assert [str(p.relative_to(data_dir)) for _, p in found] == [
        "glue/sst2/train.tsv", "glue/cola/train.tsv", "glue/mrpc/train.tsv"]
    assert skipped == ["qnli", "squad"]  # no train files here: they contribute nothing
    with pytest.raises(SparqError, match="evaluation file"):
        load_corpus(UpstreamConfig(corpus="files", files=[str(data_dir / "glue/sst2/dev.tsv")]), str(data_dir), 0)
    text = tmp_path / "corpus.txt"
    text.write_text("b line\na line\nb line\n\n")
    c = load_corpus(UpstreamConfig(corpus="files", files=[str(text)]), str(data_dir), 0)
    assert sorted(c.lines) == ["a line", "b line"] and c.stats()["corpus_lines"] == 2


def test_upstream_ramp_starts_after_the_upstream_warmup(smoke_overrides):
    """Prune OFA's upstream stage has its own lr warm-up: the pruning ramp starts after it, whatever
    the task fine-tune's `train.warmup_ratio` is."""
    from suite.config import compose
    from suite.prune.schedule import effective_start
    from suite.upstream.mlm import upstream_pruners

    for train_warmup in (0.0, 0.3):
        cfg = compose(smoke_overrides + UPSTREAM + ["stage=upstream", "upstream.warmup_ratio=0.2",
                                                    f"train.warmup_ratio={train_warmup}"])
        (pruner,) = upstream_pruners(cfg, torch.device("cpu"))
        assert pruner.start == effective_start(cfg.sparsity.start, 0.2) == max(cfg.sparsity.start, 0.2)
