"""One grid cell, end to end: `python -m suite.run [overrides]` (a Hydra app; `-m` sweeps).

validate -> (skip if recorded) -> load model, tokenizer, data -> build modifiers -> fine-tune ->
evaluate -> measure compression -> record in MLflow. Every check on user input happens before the
MLflow run is opened, so bad input logs nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from suite.config import RunConfig, register_configs, validate
from suite.distributed import SINGLE, Gate, World
from suite.errors import EXPECTED, SparqError, debug, one_line
from suite.paths import CONF_DIR
from suite.quiet import yield_to_timer
from suite.registry import Registry
from suite.runtime import CellResult, pick_device, seed_everything, subset  # noqa: F401  (re-exported)

log = logging.getLogger("sparq")


def preflight(cfg: RunConfig) -> list[Path]:
    """Cheap checks of everything the run will read; returns the data files (for hashing)."""
    from suite.models import check_model
    from suite.tasks import check_task_files

    check_model(cfg.model)  # a hub id must resolve; a missing local path is said so
    if cfg.init == "checkpoint":  # its head must fit the task (size, label set)
        from suite.models import check_checkpoint

        check_checkpoint(cfg.model, cfg.task)
    check_task_files(cfg.task, cfg.data_dir)
    pick_device(cfg.device)
    if cfg.data_dir is None:
        return []
    root = Path(cfg.data_dir)
    return [root / f for f in cfg.task.files.values() if (root / f).is_file()]


def build_modifiers(cfg: RunConfig, ctx) -> list:
    from suite.distill import DISTILLERS
    from suite.prune import PRUNERS
    from suite.quant import QUANTIZERS

    modifiers = []
    for registry, section in ((PRUNERS, cfg.sparsity), (DISTILLERS, cfg.distill), (QUANTIZERS, cfg.quant)):
        if registry is PRUNERS and cfg.stage == "transfer":  # upstream masks, locked (suite/upstream)
            from suite.upstream.transfer import transfer_modifiers

            modifiers += transfer_modifiers(cfg, ctx)
            continue
        modifiers += registry.get(section.method)(section, ctx)
    from suite.grid import debug_modifiers

    return modifiers + debug_modifiers(cfg.debug)  # test hooks; none unless debug.* is set


@dataclass(frozen=True)
class Stage:
    """One entry of the stage registry: the record kind it writes (CellRecord.kind; its id is
    `suite.identity.config_hash(cfg, kind)`), how it runs inside `recorded_run`, and the stage it
    stands on (built and recorded first, unless this cell is already recorded)."""

    kind: str
    run: Callable[[RunConfig], CellResult]
    before: Callable[[RunConfig], object] | None = None


def _upstream(cfg: RunConfig) -> CellResult:
    from suite.upstream.stage import run_upstream_cell

    return run_upstream_cell(cfg)


def _ensure_upstream(cfg: RunConfig) -> object:
    from suite.upstream.stage import ensure_upstream

    return ensure_upstream(cfg)


def run_cell(cfg: RunConfig) -> CellResult:
    """Run one validated config as its stage (`cfg.stage`) and record it. Raises SparqError on bad
    input before logging."""
    return STAGES.get(cfg.stage).run(cfg)


def record_cell(cfg: RunConfig) -> CellResult:
    """The cell stage (finetune, transfer): fine-tune + compress + evaluate + measure, one run.
    Under torchrun rank 0 records it and the other ranks train beside it (suite/distributed.py)."""
    from suite import distributed, tracking

    data_files = preflight(cfg)
    cid = tracking.cell_id(cfg)
    world = distributed.current()
    if not world.main:
        return _worker_cell(cfg, cid, world)
    with Gate(world) as gate:  # the other ranks wait for rank 0's go (or its skip)
        return _main_cell(cfg, cid, data_files, world, gate)


def _worker_cell(cfg: RunConfig, cid: str, world: World) -> CellResult:
    """A torchrun rank > 0: trains with rank 0 once rank 0 holds the cell and opened its run."""
    if not Gate.wait(world):
        return CellResult(cid, "SKIPPED")
    threads = cfg.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    seed_everything(cfg.seed)
    execute(cfg, threads, world)
    return CellResult(cid, "FINISHED")


def _main_cell(cfg: RunConfig, cid: str, data_files: list[Path], world: World, gate: Gate) -> CellResult:
    from suite import tracking

    experiment = tracking.experiment_name(cfg)
    tracking.setup_mlflow(experiment)
    if not cfg.force and (done := tracking.finished_run(experiment, cid)) is not None:
        log.info("cell %s already recorded (run %s); skipping (force=true re-runs)", cid, done.info.run_id)
        return CellResult(cid, "SKIPPED", done.info.run_id, dict(done.data.metrics))
    tracking.close_orphans(experiment, cid)  # RUNNING runs of this cell whose process died
    if (before := STAGES.get(cfg.stage).before) is not None:  # e.g. transfer: the upstream model
        before(cfg)
        tracking.setup_mlflow(experiment)
    threads = cfg.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    seed_everything(cfg.seed)
    from suite.recorded import recorded_run

    with recorded_run(cfg, kind="cell", cell_id=cid, experiment=experiment,
                      params=tracking.run_params(cfg),
                      tags={"threads": str(threads), "seed": str(cfg.seed)}, data_files=data_files,
                      run_name=f"{cfg.model.label}-{cfg.task.name}-{cfg.sparsity.method}"
                               f"-{cfg.quant.method}-{cfg.distill.method}-s{cfg.seed}",
                      skip_finished=not cfg.force) as run:
        if run.existing is not None:  # an identical cell finished while this one waited for its lock
            return CellResult(cid, "SKIPPED", run.run_id, dict(run.existing.data.metrics))
        gate.open()
        metrics, tags, outcomes = execute(cfg, threads, world)
        from suite.describe import cell_record

        run.finish(cell_record(cfg, kind="cell", cell_id=cid, run_id=run.run_id, experiment=experiment,
                               metrics=metrics, tags=tags, outcomes=outcomes), metrics, tags)
        return CellResult(cid, "FINISHED", run.run_id, metrics)


def execute(cfg: RunConfig, threads: int, world: World = SINGLE) -> tuple[dict[str, float], dict[str, str], dict]:
    """The compute of a cell: returns (metrics, tags, per-example outcomes of its eval). Under
    torchrun every rank trains; rank 0 alone goes on to evaluate and measure (the others return {})."""
    from suite import compression, distributed, pack
    from suite.evaluation import evaluate_with_outcomes
    from suite.lifecycle import RunContext
    from suite.models import load_model, load_tokenizer
    from suite.tasks import TASK_KINDS, load_task_data
    from suite.teacher import is_teacher_cell, teacher_provider
    from suite.teacher import train_stats as teacher_train_stats
    from suite.train import fine_tune, train_loader

    start = time.perf_counter()
    yield_to_timer()  # here and between stages: loading, packing and JIT work pause for a timing cell too
    device = distributed.local_device(pick_device(cfg.device), world)
    kind = TASK_KINDS.get(cfg.task.kind)
    tokenizer = load_tokenizer(cfg.model)
    data = load_task_data(cfg.task, cfg.data_dir)
    train_ds = subset(data.train, cfg.profile.train_samples, cfg.seed)
    eval_ds = subset(data.eval, cfg.profile.eval_samples, cfg.seed)
    train_features = kind.featurize(train_ds, tokenizer, cfg.task, train=True)
    eval_features = kind.featurize(eval_ds, tokenizer, cfg.task, train=False)
    collate = kind.collator(tokenizer)
    loader = train_loader(train_features, collate, cfg.train.batch_size, cfg.seed,
                          group_by_length=cfg.train.group_by_length, index=True)

    yield_to_timer()
    seed_everything(cfg.seed)
    ctx = RunContext(cfg=cfg, task=kind, train_loader=loader, device=device,
                     teacher=teacher_provider(cfg, train_features, collate, device, world))
    if is_teacher_cell(cfg):  # the dense cell is the teacher: trained once per config, shared
        model, modifiers = ctx.teacher(), []
        train_stats = teacher_train_stats(cfg)
    else:
        model = load_model(cfg.model, cfg.task, cfg.train.dropout, keep_head=cfg.init == "checkpoint")
        if cfg.init == "finetuned":  # start from the cached dense teacher (IBM's initialisation)
            from suite.teacher import load_teacher_weights

            load_teacher_weights(model, ctx.teacher)
        modifiers = build_modifiers(cfg, ctx)
        train_stats = fine_tune(model, loader, cfg.train, cfg.profile, modifiers, device, cfg.progress,
                                desc=f"{cfg.task.name} {cfg.sparsity.method}/{cfg.quant.method}", world=world)
    if not world.main:  # rank 0 evaluates, measures and records the model every rank holds
        return {}, {}, {}
    yield_to_timer()
    metrics, outcomes = evaluate_with_outcomes(model, kind, cfg.task, eval_ds, eval_features, collate,
                                               cfg.train.eval_batch_size, device, cfg.progress)
    linears = compression.prunable_linears(model)
    sparsity = compression.measured_sparsity(linears)
    dense_bytes = compression.dense_fp32_bytes(linears)
    packed = pack.packed_bytes(linears, cfg)
    metrics.update(train_stats)
    metrics.update({
        "sparsity_measured": sparsity,
        "sparsity_after_quant": compression.sparsity_after_quant(linears),
        "compression_nominal": compression.nominal_compression(sparsity, cfg.quant.weight_bits),
        "encoder_bytes_dense_fp32": float(dense_bytes), "encoder_bytes_packed": float(packed),
        "compression_packed": dense_bytes / packed, "train_examples": float(len(train_ds)),
        "eval_examples": float(len(eval_ds)), "wall_seconds": time.perf_counter() - start,
    })
    stage_tags = {"stage": cfg.stage}
    if cfg.init == "checkpoint":  # where the weights came from (file sha256s, or hub id + revision)
        from suite.models import checkpoint_source

        stage_tags.update(checkpoint_source(cfg.model))
    for m in modifiers:
        metrics.update(m.metrics(model))
        stage_tags.update(m.tags())  # e.g. transfer: upstream_cell_id, mask_sha256
    teacher = getattr(ctx.teacher, "cache", {})
    if "reused" in teacher:  # cells that used the teacher (KD, finetuned init, the dense cell): cached?
        metrics["teacher_reused"] = float(teacher["reused"])
    per_process, accumulation = distributed.layout(cfg.train.batch_size, world.size, cfg.train.micro_batch_size)
    tags = {"data_source": data.source, "train_from_dev": str(data.train_from_dev).lower(),
            "task_version": str(cfg.task.version), "device": str(device), "train_processes": str(world.size),
            "train_per_process_batch": str(per_process), "train_accumulation": str(accumulation),
            "train_precision": distributed.precision(device, cfg.train.precision), **stage_tags}
    if "reused" in teacher:
        from suite.teacher import teacher_key

        tags.update({"teacher_reused": str(teacher["reused"]).lower(), "teacher_key": teacher_key(cfg)})
    yield_to_timer()
    for extra, extra_tags in export_and_measure(cfg, model, metrics, kind, eval_ds, eval_features, collate,
                                                tokenizer, threads):
        metrics.update(extra)
        tags.update(extra_tags)
    return metrics, tags, outcomes


def export_and_measure(cfg, model, metrics, kind, eval_ds, eval_features, collate, tokenizer, threads):
    """The student's artifacts (suite/export: compressed cells) and the packed eval + latency
    (suite/measure: measure.*; auto: compressed, not smoke); (metrics, tags) of each."""
    import tempfile

    import mlflow

    from suite import tracking
    from suite.export import export_cell, log_bundle
    from suite.measure import measure

    run = mlflow.active_run()
    cell = {"cell_id": tracking.cell_id(cfg), "run_id": run.info.run_id if run else None}
    with tempfile.TemporaryDirectory(prefix="sparq-student-") as tmp:
        bundle = Path(tmp)
        exported = export_cell(cfg, model, kind, eval_features, collate, tokenizer, bundle, cell)
        yield_to_timer()
        measured = measure(cfg, model, metrics, kind, eval_ds, eval_features, collate, threads, bundle=bundle)
        try:
            log_bundle(bundle)
        except Exception as e:  # noqa: BLE001 - the record says so; the cell is still recorded
            exported[1]["export_error"] = f"logging: {type(e).__name__}: {e}"[:500]
    return [exported, measured]


# Every stage a run can be (Prune OFA's upstream pre-training: suite/upstream). The dense teacher
# is no entry: it is built inside the first cell that needs it (suite/teacher.py) and keyed by
# config_hash(teacher_config(cfg), "teacher").
STAGES: Registry[Stage] = Registry("stage")
STAGES.register("finetune")(Stage("cell", record_cell))
STAGES.register("transfer")(Stage("cell", record_cell, before=_ensure_upstream))
STAGES.register("upstream")(Stage("upstream", _upstream))


# ---------------------------------------------------------------- command line

def fail(message: str) -> None:
    print(f"sparq: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def precheck(overrides: list[str]) -> None:
    """Compose the config before Hydra runs it, so unknown options fail in one clear line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        fail(one_line_compose_error(e))
    try:
        preflight(validate(cfg))
    except SparqError as e:
        fail(str(e))


def precheck_grid(overrides: list[str]) -> None:
    """Before a grid's first cell: every model its cells need must load (a hub id resolves, a local
    directory exists), or one line and nothing runs."""
    from suite.models import check_model
    from suite.sweep import grid_model_configs

    try:
        needed = grid_model_configs(overrides)
    except Exception:  # noqa: BLE001 - a sweep this cannot expand is checked cell by cell, as before
        return
    for model, job in needed:
        try:
            check_model(model)
        except SparqError as e:
            fail(f"{e} (grid cell {' '.join(job)})")


def precheck_sweep(overrides: list[str]) -> None:
    """Every job of a multirun composed and validated before the first one runs: a misspelt key
    or a bad value stops the grid in one line (exit 2), before any cell or report."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from suite.sweep import command_line_jobs

    try:
        for cfg in command_line_jobs(overrides):
            validate(cfg)
    except (HydraException, OmegaConfBaseException, SparqError) as e:
        if debug():
            raise
        fail(str(e) if isinstance(e, SparqError) else one_line_compose_error(e))


def one_line_compose_error(e: Exception) -> str:
    import re

    text = str(e)
    found = re.search(r"Could not (?:find|load) '([\w/]+)/([^']+)'", text)
    if found and (CONF_DIR / found.group(1)).is_dir():
        group, bad = found.groups()
        allowed = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        return f"{group}: unknown option '{bad}'; allowed: {', '.join(allowed)}"
    if getattr(e.__cause__, "full_key", None):  # "Error merging override seed=abc": the cause says why
        e, text = e.__cause__, str(e.__cause__)
    key = getattr(e, "full_key", None)
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    return f"{key}: {first}" if key else first


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(dcfg: DictConfig) -> float | dict | None:
    """One cell. In a multirun a failing cell never stops the grid: its MLflow run is FAILED
    with the error, and the job returns a FAILED record (see suite/grid.py) instead of raising."""
    from dataclasses import asdict

    from suite import grid

    multirun, start = grid.is_multirun(), time.perf_counter()
    if multirun:
        grid.behave_as_main_process()  # joblib workers: same results as the sequential launcher
    try:
        dcfg.threads = grid.auto_threads(dcfg)  # threads=0: cores // cells (or torchrun processes) in parallel
        cfg = validate(dcfg)
        join_processes(cfg)
        result = run_cell(cfg)
    except Exception as e:
        if not multirun:
            if isinstance(e, EXPECTED) and not debug():  # bad input, an OSError on its own files
                fail(one_line(e))
            raise
        log.error("cell failed: %s: %s", type(e).__name__, e)
        return {**grid.failed_record(dcfg, e), "seconds": time.perf_counter() - start}
    log.info("%s %s %s", result.status, result.cell_id, json.dumps(
        {k: round(v, 4) for k, v in result.metrics.items() if k.startswith("eval_")}))
    if multirun:
        return {**asdict(result), "seconds": time.perf_counter() - start}
    return result.metrics.get("eval_primary")


def join_processes(cfg: RunConfig) -> None:
    """Under torchrun: this process joins the cell's process group (suite/distributed.py)."""
    from suite import distributed
    from suite.errors import ConfigError

    world = distributed.world_from_env()
    if not world.active:
        return
    if cfg.stage == "upstream":
        raise ConfigError("stage", "upstream trains on one process; run it without torchrun (a transfer "
                          "cell under torchrun builds a missing upstream on rank 0)")
    distributed.start(world, pick_device(cfg.device))
    if not world.main:  # rank 0 speaks for the cell
        logging.getLogger().setLevel(logging.WARNING)


def cli() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = sys.argv[1:]
    overrides = [a for a in args if not a.startswith("-")]
    if any(a in ("-m", "--multirun") for a in args) and int(os.environ.get("WORLD_SIZE") or 1) > 1:
        fail("a grid (-m) under torchrun: torchrun runs one cell on many processes; send a grid to many "
             "machines with hydra/launcher=slurm")
    if not any(a in ("--help", "-h", "--cfg", "-c", "--info") or a.startswith("--cfg") for a in args):
        if "-m" in args or "--multirun" in args:
            precheck_sweep(overrides)
            precheck_grid(overrides)
        else:
            precheck(overrides)
    register_configs()
    try:
        main()
    finally:
        from suite.distributed import stop

        stop()
    from suite.grid import exit_code

    if code := exit_code():  # a grid with failed or missing cells (summary printed above)
        raise SystemExit(code)


if __name__ == "__main__":
    cli()
