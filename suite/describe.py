"""What a run is, as a `CellRecord`: its axes in the methods' own words, the options that make it a
variant, the command that reproduces it, the data it read and where it ran (host-free).

The report reads these records and never re-derives an axis from params: every fact here comes
from the typed config (the method classes answer for their pattern, label and techniques).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import shlex
import sys
from functools import lru_cache
from importlib import metadata

from omegaconf import OmegaConf

from suite.paths import CONF_DIR
from suite.record import Axes, CellRecord, Environment

GROUPS = ("sparsity", "quant", "distill")
COMPRESSION_KEYS = ("sparsity_measured", "sparsity_after_quant", "compression_nominal", "compression_packed",
                    "encoder_bytes_packed", "encoder_bytes_dense_fp32")
HOST_KEYS = ("data_dir", "cache_dir")  # absolute paths of this machine: never in a record


def model_label(model) -> str:
    """The model plus its shrink options: a layer- or width-reduced model is another model."""
    label = model.label
    if model.shrink_keep_every > 1:
        label += f" (1/{model.shrink_keep_every} layers)"
    if model.shrink_intermediate:
        label += f" (ffn {model.shrink_intermediate})"
    return label


@lru_cache(maxsize=64)
def _option_file(group: str, option: str) -> dict | None:
    path = CONF_DIR / group / f"{option}.yaml"
    if not path.is_file():
        return None
    data = OmegaConf.to_container(OmegaConf.load(path))
    data.pop("defaults", None)
    return data


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _text(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def variant(cfg) -> dict[str, str]:
    """Options that differ from their option file's defaults (conf/<group>/<method>.yaml, else the
    method class; conf/train/default.yaml), minus the keys that are axes of the record."""
    out: dict[str, str] = {}
    for group, section in zip(GROUPS, (cfg.sparsity, cfg.quant, cfg.distill), strict=True):
        mine = _flat(dataclasses.asdict(section))
        ref = _option_file(group, section.method) or dataclasses.asdict(type(section)())
        ref = _flat(ref)
        for key, value in mine.items():
            if key.split(".")[0] in section.axis_keys:
                continue
            if key not in ref or not _same(ref[key], value):
                out[f"{group}.{key}"] = _text(value)
    train_ref = _flat(_option_file("train", "default") or {})
    for key, value in _flat(dataclasses.asdict(cfg.train)).items():
        if key in train_ref and not _same(train_ref[key], value) and key not in ("eval_batch_size", "micro_batch_size"):
            out[f"train.{key}"] = _text(value)
    return out


def axes(cfg) -> Axes:
    s, q, d = cfg.sparsity, cfg.quant, cfg.distill
    init = "upstream" if cfg.stage == "transfer" else cfg.init
    budget = cfg.profile.budget
    return Axes(model=model_label(cfg.model), task=cfg.task.name, profile=cfg.profile.name, seed=cfg.seed,
                init=init, budget=f"{budget:g}x", sparsity_method=s.method,
                sparsity_target=round(1.0 - s.nominal_density(), 12), sparsity_pattern=s.pattern_label(),
                quant_method=q.method, weight_bits=q.weight_bits, act_bits=q.act_bits, distill_method=d.method,
                variant=variant(cfg), sparsity_kind=s.pattern, sparsity_label=s.label(), quant_label=q.label(),
                ablated=sorted(f"quant.{k}" for k in q.ablated()))


def command(overrides: list[str] | None = None) -> str:
    """`python -m suite.run <overrides>` of this run: the Hydra job's overrides when under Hydra
    (a sweep's cell gets its own), else the command line."""
    if overrides is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            overrides = list(HydraConfig.get().overrides.task)
        except (ImportError, ValueError):
            overrides = [a for a in sys.argv[1:] if not a.startswith("-")] if "suite" in sys.argv[0] else []
    return " ".join(["python -m suite.run", *(shlex.quote(o) for o in overrides)])


@lru_cache(maxsize=1)
def environment() -> Environment:
    from suite.tracking import cpu_info

    cpu = cpu_info()

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    import torch

    return Environment(cpu_model=cpu.get("model") or None, cpu_flags=list(cpu.get("flags", [])),
                       threads=torch.get_num_threads(), torch=version("torch"),
                       transformers=version("transformers"), python=platform.python_version())


def config_record(cfg) -> dict:
    """The resolved config without this machine's paths."""
    d = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    for key in HOST_KEYS:
        d.pop(key, None)
    return d


def data_info(cfg, tags: dict[str, str]) -> dict:
    from suite.identity import data_identity

    ident = data_identity(cfg.task, cfg.data_dir)
    source = tags.get("data_source") or ident["source"]
    if cfg.data_dir and source.startswith(str(cfg.data_dir)):
        source = "data_dir"
    return {"source": source, "files": ident["files"],
            "train_from_dev": tags.get("train_from_dev", str(ident.get("train_from_dev", False))).lower() == "true"}


def cell_record(cfg, *, kind: str, cell_id: str, run_id: str | None, experiment: str,
                metrics: dict[str, float], tags: dict[str, str], status: str = "FINISHED",
                overrides: list[str] | None = None, outcomes: dict | None = None) -> CellRecord:
    """The record of one run of stage `kind` ('cell' | 'teacher' | 'upstream')."""
    from suite.tracking import git_sha

    sha = git_sha()
    m = {k: float(v) for k, v in metrics.items()}
    env = environment()
    latency = {k: v for k, v in m.items() if k.startswith("latency_ms_")}
    if latency:
        latency.update(kernel_path=tags.get("kernel_path"), batch=cfg.measure.latency_batch,
                       seq=cfg.measure.latency_seq, threads=int(tags.get("measure_threads") or env.threads or 0),
                       cpu_busy=m.get("timing_cpu_busy"),
                       quiet={"true": True, "false": False}.get(tags.get("timing_quiet", "")))
    budget = {"steps": _int(m.get("train_steps")), "batch_size": cfg.train.batch_size,
              "train_examples": _int(m.get("train_examples")), "eval_examples": _int(m.get("eval_examples"))}
    ax, data = axes(cfg), None
    if kind == "upstream":  # MLM on a corpus, fp32, distilled from the dense encoder (suite/upstream)
        from suite.identity import corpus_identity

        ax = ax.model_copy(update={"task": "mlm", "quant_method": "fp32", "weight_bits": 32, "act_bits": 32,
                                   "distill_method": "hidden", "quant_label": "fp32", "ablated": [],
                                   "init": "pretrained"})
        budget.update(batch_size=cfg.upstream.batch_size, train_examples=_int(m.get("mlm_examples")),
                      eval_examples=None)
        data = {"source": tags.get("corpus_source") or cfg.upstream.corpus,
                "files": corpus_identity(cfg).get("files", {})}
    return CellRecord(
        kind=kind, cell_id=cell_id, run_id=run_id, experiment=experiment, status=status,
        command=command(overrides), git_sha=sha.removesuffix("+dirty"), git_dirty=sha.endswith("+dirty"),
        axes=ax, metrics=m, compression={k: m[k] for k in COMPRESSION_KEYS if k in m},
        latency=latency, budget=budget, data=data if data is not None else data_info(cfg, tags),
        environment=env, tags={k: str(v) for k, v in tags.items()}, config=config_record(cfg), outcomes=outcomes)


def _int(v) -> int | None:
    return int(v) if v is not None and math.isfinite(v) else None

