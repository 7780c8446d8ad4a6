"""One identity for every stage: `config_hash(cfg, stage)`.

A stage's id is the sha256 (16 hex) of what defines its output, and nothing else:

  cell      the resolved config minus where and how it runs (RUN_IRRELEVANT: device, threads,
            paths, progress, force, the experiment it is filed under, what is exported, train.eval_batch_size) and minus defaults that never change
            a result (profile.budget 1, debug hooks that only sleep); plus the data files read
            (content sha256 of each, relative path) and the split rule, the model's weights
            (sha256 of the weight files, or hub id + revision), and the code version of each
            method (`version` on the sparsity / quant / distill config classes).
  teacher   `cfg` is the teacher's config (`teacher.teacher_config(cell)`: the dense fp32
            undistilled cell of the same model x task x train x profile x seed): model, task,
            train, profile (minus budget), seed, the data, the weights and the code versions;
            never the method groups, init or the measurement of the cell that asks for it.
  transfer  a cell (above) plus the id of the upstream stage it stands on (or `upstream.ref`).
  upstream  model weights, sparsity method (+ its version), upstream options minus `ref`, the
            effective number of steps, seed, and the corpus files read (content sha256).

A changed data file, a re-downloaded model with other weights, or a bumped method version
gives a new id, so an old result is never returned for new inputs. File hashes are cached per
process by (path, size, mtime).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import lru_cache
from pathlib import Path

STAGES = ("cell", "teacher", "upstream")
# Keys that do not change a result: where it runs, how chatty it is, how eval is batched.
# The experiment a cell is filed under does not change it either: the same cell asked for by two grids
# is one cell, recorded once (suite.tracking.finished_run looks in every experiment).
RUN_IRRELEVANT = {"force", "progress", "device", "threads", "data_dir", "cache_dir", "experiment_name",
                  "export"}
TRAIN_IRRELEVANT = {"eval_batch_size", "micro_batch_size"}  # how a step is batched, not what it computes
# Options added after cells were recorded, at the value that reproduces those cells: left out of the id
# at that value, so recorded cells keep their ids (dotted path -> neutral value).
NEUTRAL_DEFAULTS: dict[str, object] = {"train.precision": "fp32"}
# Facts about a task that describe it to the report and the estimates, never change a result.
TASK_DESCRIPTIVE = {"chance", "order", "eta_seconds", "label_range"}
# The default measure.backends became the cell's own ONNX model in place of torch dynamic int8; the
# backends timed change no weight and no accuracy, so cells with the default keep their earlier ids.
MEASURE_BACKENDS_NOW = ["torch_fp32", "sparq", "onnxruntime_qdq"]
MEASURE_BACKENDS_BEFORE = ("torch_fp32", "torch_int8_onednn", "sparq")
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.msgpack", "*.h5", "config.json")


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path | str) -> str:
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------- inputs

def data_identity(task, data_dir: str | None) -> dict:
    """The data a cell reads: {source, files: {relpath: sha256}, train_from_dev, split rule}."""
    root = Path(data_dir) if data_dir else None
    files = {rel: file_sha256(root / rel) for rel in sorted(task.files.values())
             if root is not None and (root / rel).is_file()}
    if not files:  # the Hugging Face hub (datasets' own fingerprint is not stable across versions)
        return {"source": f"hub:{task.hub_path}/{task.hub_name or ''}", "files": {},
                "splits": dict(task.hub_splits)}
    train_from_dev = task.files.get("train") not in files
    out = {"source": "data_dir", "files": files, "train_from_dev": train_from_dev}
    if train_from_dev:
        out["eval_split_of_dev"] = task.eval_split_of_dev
    return out


def model_identity(model) -> dict:
    """The starting weights: sha256 of a local directory's weight files, or hub id + revision."""
    from suite.models import resolve_model_dir

    where, local = resolve_model_dir(model)
    if not local:
        return {"hub": where, "revision": model.revision or "main"}
    root = Path(where)
    files = sorted({p for pattern in WEIGHT_FILES for p in root.glob(pattern) if p.is_file()})
    return {"weights": {p.name: file_sha256(p) for p in files}}


UPSTREAM_VERSION = 2  # 2: the upstream pruning ramp starts after upstream.warmup_ratio (was train's)


def method_versions(cfg) -> dict[str, int]:
    return {"sparsity": cfg.sparsity.version, "quant": cfg.quant.version, "distill": cfg.distill.version}


# ---------------------------------------------------------------- per stage

def config_fields(cfg) -> dict:
    """The resolved config as a dict (the finetune stage keeps its pre-stage shape)."""
    d = dataclasses.asdict(cfg)
    if d.get("stage", "finetune") == "finetune":
        d.pop("stage", None)
        d.pop("upstream", None)
    return d


def _cell(cfg) -> dict:
    d = {k: v for k, v in config_fields(cfg).items() if k not in RUN_IRRELEVANT}
    d["train"] = {k: v for k, v in d["train"].items() if k not in TRAIN_IRRELEVANT}
    d["task"] = {k: v for k, v in d["task"].items() if k not in TASK_DESCRIPTIVE}
    drop_neutral(d)
    if d.get("measure", {}).get("backends") == MEASURE_BACKENDS_NOW:  # ids from before that default
        d["measure"]["backends"] = list(MEASURE_BACKENDS_BEFORE)
    if d.get("profile", {}).get("budget", 1.0) == 1.0:
        d["profile"].pop("budget", None)
    # Test hooks count only when they change results (a forced NaN).
    debug = {k: v for k, v in (d.pop("debug", None) or {}).items() if k != "step_sleep" and v is not None}
    if debug:
        d["debug"] = debug
    d["inputs"] = {"data": data_identity(cfg.task, cfg.data_dir), "model": model_identity(cfg.model),
                   "code": method_versions(cfg)}
    if d.get("stage") == "transfer":  # the upstream model it stands on (an id or a named entry)
        from suite.upstream.config import upstream_config

        d["inputs"]["upstream"] = cfg.upstream.ref or config_hash(upstream_config(cfg), "upstream")
    return d


def drop_neutral(d: dict) -> None:
    """Remove the NEUTRAL_DEFAULTS options that are at their neutral value from a config dict, in place."""
    for path, neutral in NEUTRAL_DEFAULTS.items():
        *parents, leaf = path.split(".")
        node = d
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and node[leaf] == neutral:
            del node[leaf]


def _teacher(t) -> dict:
    profile = {k: v for k, v in dataclasses.asdict(t.profile).items() if k != "budget"}
    train = {k: v for k, v in dataclasses.asdict(t.train).items() if k not in TRAIN_IRRELEVANT}
    task = {k: v for k, v in dataclasses.asdict(t.task).items() if k not in TASK_DESCRIPTIVE}
    doc = {"model": dataclasses.asdict(t.model), "task": task, "train": train, "profile": profile, "seed": t.seed,
           "inputs": {"data": data_identity(t.task, t.data_dir), "model": model_identity(t.model),
                      "code": method_versions(t)}}
    if getattr(t, "init", "pretrained") == "checkpoint":  # the checkpoint as is, not a fine-tune of it
        doc["init"] = "checkpoint"
    drop_neutral(doc)
    return doc


def _upstream(cfg) -> dict:
    from suite.upstream.config import effective_steps

    u = dataclasses.asdict(cfg.upstream)
    u.pop("ref", None)
    u["steps"] = effective_steps(cfg)
    return {"stage": "upstream", "model": dataclasses.asdict(cfg.model), "sparsity": dataclasses.asdict(cfg.sparsity),
            "upstream": u, "seed": cfg.seed,
            "inputs": {"corpus": corpus_identity(cfg), "model": model_identity(cfg.model),
                       "code": {"sparsity": cfg.sparsity.version, "upstream": UPSTREAM_VERSION}}}


def corpus_identity(cfg) -> dict:
    """The files the upstream corpus reads (content sha256), or the hub dataset it streams."""
    u = cfg.upstream
    if u.corpus == "hub":
        return {"hub": f"{u.hub_path}/{u.hub_name or ''}"}
    if u.corpus == "files":
        return {"files": {Path(f).name: file_sha256(f) for f in u.files if Path(f).is_file()}}
    from suite.upstream.corpus import corpus_files

    found, _ = corpus_files(u, cfg.data_dir)
    root = Path(cfg.data_dir)
    return {"files": {str(p.relative_to(root)): file_sha256(p) for _, p in found}}


IDENTITY = {"cell": _cell, "teacher": _teacher, "upstream": _upstream}


def identity(cfg, stage: str = "cell") -> dict:
    """What defines `stage`'s output for `cfg` (the hashed document; logged for humans)."""
    if stage not in IDENTITY:
        raise ValueError(f"stage={stage!r}; allowed: {', '.join(STAGES)}")
    return IDENTITY[stage](cfg)


def config_hash(cfg, stage: str = "cell") -> str:
    """The id of `stage` for `cfg`: 16 hex of sha256 over `identity(cfg, stage)`."""
    return digest(identity(cfg, stage))
