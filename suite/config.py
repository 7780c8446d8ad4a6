"""Typed configs for every Hydra group, stored in Hydra's ConfigStore and validated up front.

`validate(cfg)` turns the composed DictConfig into a `RunConfig` (dataclasses all the way down),
running every `__post_init__` check; the polymorphic groups (sparsity, quant, distill) are typed
by the config class that their method registered. Any bad value raises `ConfigError` naming the
key and the allowed values, before anything is loaded or logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from suite.distill.base import DistillConfig
from suite.errors import ConfigError
from suite.prune.base import SparsityConfig
from suite.quant.base import QuantConfig
from suite.upstream.config import UpstreamConfig

TASK_KINDS = ("classification", "regression", "qa")
LR_SCHEDULES = ("linear", "rewind")  # suite/train.py
PRECISIONS = ("fp32", "bf16")  # train.precision: the training forward's autocast dtype
# student start: the pre-trained model | the cached dense teacher | model.name_or_path is already
# fine-tuned for this task (its head kept; it is the dense reference and the teacher, never trained)
INITS = ("pretrained", "finetuned", "checkpoint")
DEVICES = ("auto", "cpu", "cuda")


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(key, message)


# Numeric ranges of the plain sections, in one place: key -> rule. Rules: "> a", ">= a", "[a, b)",
# "[a, b]", "(a, b]"; "or null": None allowed. NaN and infinities break every rule.
RANGES = {
    "train.epochs": "> 0", "train.lr": "> 0", "train.batch_size": ">= 1", "train.eval_batch_size": ">= 1",
    "train.weight_decay": ">= 0", "train.warmup_ratio": "[0, 1)",
    "train.max_grad_norm": ">= 0",  # 0: no clipping; a negative norm would flip the gradient
    "train.micro_batch_size": ">= 1 or null",
    "train.dropout": "[0, 1) or null",
    "profile.train_samples": ">= 1 or null", "profile.eval_samples": ">= 1 or null",
    "profile.max_steps": ">= 1 or null", "profile.epochs": "> 0 or null", "profile.lr": "> 0 or null",
    "profile.budget": "> 0",  # 1 = the recipe's steps, 2 = twice as many
    "debug.nan_at_step": ">= 0 or null", "debug.step_sleep": ">= 0",
    "measure.latency_batch": ">= 1", "measure.latency_seq": "[8, 4096]", "measure.latency_repeats": ">= 1",
    "threads": ">= 0", "seed": ">= 0",
}


def in_range(value: Any, rule: str) -> bool:
    rule, _, null = rule.partition(" or ")
    if value is None:
        return null == "null"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if rule[0] in "[(":
        lo, hi = (float(x) for x in rule[1:-1].split(","))
        return (lo <= value if rule[0] == "[" else lo < value) and (value <= hi if rule[-1] == "]" else value < hi)
    op, bound = rule.split()
    return value >= float(bound) if op == ">=" else value > float(bound)


def check_ranges(obj: Any, section: str) -> None:
    """Raise ConfigError naming key, value and rule for the first field of `section` out of range."""
    prefix = f"{section}." if section else ""
    for key, rule in RANGES.items():
        name = key[len(prefix):]
        if key.startswith(prefix) and "." not in name and not in_range(value := getattr(obj, name), rule):
            raise ConfigError(key, f"must be {rule}, got {value!r}")


@dataclass
class ModelConfig:
    name: str = MISSING  # label used in results (minilm, bert_base, ...)
    name_or_path: str | None = None  # hub id or local directory; wins over `package`
    package: str | None = None  # Python package that ships the weights (the embedded default)
    revision: str | None = None  # hub revision, for reproducible hub loads
    # Dense small baselines (sparse-vs-small claim): keep every k-th layer / shrink FFN width.
    shrink_keep_every: int = 1
    shrink_intermediate: int | None = None

    def __post_init__(self) -> None:
        _require(bool(self.name_or_path or self.package), "model.name_or_path",
                 "set a hub id or local directory (or model.package)")
        _require(self.shrink_keep_every >= 1, "model.shrink_keep_every", "must be >= 1")

    @property
    def label(self) -> str:
        return self.name_or_path if (self.name_or_path and self.package) else self.name


@dataclass
class TaskConfig:
    """A task is data: where its files are, which columns hold what, and how it is scored."""

    name: str = MISSING
    kind: str = MISSING  # classification | regression | qa
    version: int = 1
    files: dict[str, str] = field(default_factory=dict)  # split -> path under the data dir
    header: bool = True
    columns: dict[str, int] = field(default_factory=dict)  # text_a / text_b / label -> TSV index
    labels: list[str] = field(default_factory=list)  # label strings in class-id order
    header_names: dict[str, str] = field(default_factory=dict)  # text_a / text_b / label -> header text (checked)
    metric: str = "glue"  # metric module shipped in suite/metrics/modules
    metric_config: str = "accuracy"  # which metric set the module computes
    primary: str = "accuracy"  # headline metric, reported as eval_primary (percent)
    hub_path: str | None = None  # hub dataset used when the data dir lacks the files
    hub_name: str | None = None
    hub_columns: dict[str, str] = field(default_factory=dict)
    hub_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "eval": "validation"})
    eval_split_of_dev: float = 0.5  # when there is no train file: fraction of dev kept for eval
    max_length: int = 128
    label_range: list[float] | None = None  # regression: [low, high] that every label lies in (checked per line)
    doc_stride: int = 128  # qa only
    max_answer_length: int = 30  # qa only
    n_best: int = 20  # qa only

    def __post_init__(self) -> None:
        _require(self.kind in TASK_KINDS, "task.kind", f"'{self.kind}'; allowed: {', '.join(TASK_KINDS)}")
        _require(self.kind != "classification" or len(self.labels) >= 2, "task.labels",
                 "a classification task needs at least two labels")
        _require("eval" in self.files, "task.files", "needs an 'eval' file")
        bad = sorted(set(self.header_names) - set(self.columns))
        _require(not bad, "task.header_names", f"'{bad[0] if bad else ''}' is not a column; allowed: "
                 f"{', '.join(self.columns)}")
        _require(0.0 < self.eval_split_of_dev < 1.0, "task.eval_split_of_dev", "must be in (0, 1)")
        _require(8 <= self.max_length <= 4096, "task.max_length", "must be in [8, 4096]")
        lr = self.label_range
        _require(lr is None or (len(lr) == 2 and all(math.isfinite(v) for v in lr) and lr[0] < lr[1]),
                 "task.label_range", f"must be [low, high], finite, low < high; got {lr}")

    @property
    def num_labels(self) -> int:
        return 1 if self.kind == "regression" else len(self.labels)


@dataclass
class TrainConfig:
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 32
    eval_batch_size: int = 128
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    dropout: float | None = None  # override the model's hidden dropout
    lr_schedule: str = "linear"  # linear | rewind (lr held during the pruning ramp; suite/train.py)
    group_by_length: bool = False  # batches of similar length (less padding; suite/train.py); opt-in
    precision: str = "fp32"  # fp32 | bf16 (autocast of the training forward; eval stays fp32)
    # Examples per forward pass of one process (null: its whole share of batch_size); smaller values
    # accumulate gradients. How a step is computed, not what: no part of a cell's id (suite/distributed.py).
    micro_batch_size: int | None = None

    def __post_init__(self) -> None:
        check_ranges(self, "train")
        _require(self.precision in PRECISIONS, "train.precision",
                 f"'{self.precision}'; allowed: {', '.join(PRECISIONS)}")
        _require(self.lr_schedule in LR_SCHEDULES, "train.lr_schedule",
                 f"'{self.lr_schedule}'; allowed: {', '.join(LR_SCHEDULES)}")


@dataclass
class ProfileConfig:
    """How big a run is: smoke (tests), quick (laptop CPU, default), full (paper scale)."""

    name: str = MISSING
    train_samples: int | None = None  # cap on training examples (None: all)
    eval_samples: int | None = None  # cap on eval examples (None: the whole dev set)
    max_steps: int | None = None  # cap on optimizer steps
    epochs: float | None = None  # overrides train.epochs when set
    lr: float | None = None  # overrides train.lr when set (short schedules want a higher lr)
    budget: float = 1.0  # training budget: x the recipe's optimizer steps (epochs over the same subset)

    def __post_init__(self) -> None:
        check_ranges(self, "profile")


@dataclass
class DebugConfig:
    """Test hooks, off by default; never set them for real results."""

    nan_at_step: int | None = None  # force a NaN loss at this optimizer step (failure-isolation tests)
    step_sleep: float = 0.0  # seconds to sleep per step and print a progress line (kill tests); no effect on results

    def __post_init__(self) -> None:
        check_ranges(self, "debug")


# onnxruntime_qdq: the cell's own exported ONNX (static int8 QDQ) under ORT; torch_int8_onednn and
# onnxruntime_int8 quantize the fp32 weights dynamically: baselines, not the cell's int8 model
MEASURE_BACKENDS = ("torch_fp32", "torch_int8_onednn", "sparq", "onnxruntime_int8", "onnxruntime_qdq")


@dataclass
class MeasureConfig:
    """Packed-model eval + latency after a cell's eval (suite/measure.py). packed_eval/latency:
    true | false | null (auto: on for sparse or quantized cells outside the smoke profile)."""

    packed_eval: bool | None = None
    latency: bool | None = None
    latency_batch: int = 1
    latency_seq: int = 128
    latency_repeats: int = 20
    backends: list[str] = field(default_factory=lambda: ["torch_fp32", "sparq", "onnxruntime_qdq"])

    def __post_init__(self) -> None:
        check_ranges(self, "measure")
        bad = [b for b in self.backends if b not in MEASURE_BACKENDS]
        _require(not bad, "measure.backends", f"'{bad[0] if bad else ''}'; allowed: {', '.join(MEASURE_BACKENDS)}")


EXPORT_FORMATS = ("safetensors", "packed", "onnx")


@dataclass
class ExportConfig:
    """What a compressed cell saves of its student as MLflow artifacts (suite/export): any of
    safetensors, packed, onnx ([]: nothing). Not part of a cell's identity."""

    formats: list[str] = field(default_factory=lambda: list(EXPORT_FORMATS))
    check_examples: int = 8  # eval examples kept with the cell's outputs, to check any reload

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in EXPORT_FORMATS]
        _require(not bad, "export.formats", f"'{bad[0] if bad else ''}'; allowed: {', '.join(EXPORT_FORMATS)}")
        _require(1 <= self.check_examples <= 256, "export.check_examples", "must be in [1, 256]")


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    task: TaskConfig = MISSING
    train: TrainConfig = MISSING
    profile: ProfileConfig = MISSING
    sparsity: SparsityConfig = MISSING  # an instance of the registered pruner's config class
    quant: QuantConfig = MISSING  # ... of the registered quantizer's config class
    distill: DistillConfig = MISSING  # ... of the registered distiller's config class
    experiment_name: str = "default"  # MLflow experiment = <experiment_name>-<profile>; set by conf/experiment/*
    seed: int = 42
    init: str = "pretrained"  # pretrained | finetuned (the cached dense teacher) | checkpoint (model.name_or_path as is)
    device: str = "auto"
    threads: int = 0  # 0: all cores
    data_dir: str | None = None  # GLUE/SQuAD files; null: the Hugging Face hub
    cache_dir: str | None = None  # teachers and other reusable artifacts; null: <project>/.cache
    force: bool = False  # re-run a cell that already has a FINISHED run
    progress: bool = True
    debug: DebugConfig = field(default_factory=DebugConfig)  # test hooks (see DebugConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)  # packed eval + latency (suite/measure.py)
    export: ExportConfig = field(default_factory=ExportConfig)  # the student's artifacts (suite/export)
    stage: str = "finetune"  # finetune | upstream | transfer (Prune OFA; suite/upstream)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)  # upstream stage / transfer source

    def __post_init__(self) -> None:
        _require(self.init in INITS, "init", f"'{self.init}'; allowed: {', '.join(INITS)}")
        if self.init == "finetuned":  # the student loads the dense teacher's weights as they are
            _require(self.stage == "finetune", "init", "finetuned starts a finetune cell; transfer loads the upstream")
            model = self.model if isinstance(self.model, ModelConfig) else None
            _require(model is None or (model.shrink_keep_every == 1 and not model.shrink_intermediate), "init",
                     "finetuned needs the teacher's architecture (no model.shrink_*)")
        if self.init == "checkpoint":  # the head and label set are checked against the task in preflight
            _require(self.stage == "finetune", "init", "checkpoint starts a finetune cell; transfer loads the upstream")
        _require(self.device in DEVICES, "device", f"'{self.device}'; allowed: {', '.join(DEVICES)}")
        check_ranges(self, "")


@dataclass
class _ComposeSchema(RunConfig):
    """What Hydra composes against: a method group holds any method's keys until `validate`
    types it by the config class that the method registered."""

    sparsity: Any = MISSING
    quant: Any = MISSING
    distill: Any = MISSING


def register_configs() -> None:
    """Store the schemas: the run's, and one typed node per method option of the polymorphic
    groups (`schema/<group>/<method>`, e.g. schema/sparsity/gmp); `validate` types each group
    section by the config class its method registered."""
    from suite.usage import groups_text

    OmegaConf.register_new_resolver("sparq_groups", groups_text, replace=True)  # the --help template
    cs = ConfigStore.instance()
    cs.store(name="sparq_schema", node=_ComposeSchema)
    for key, registry in _method_registries().items():
        for name in registry.names():
            cs.store(group=f"schema/{key}", name=name, node=registry.config_class(name), package=key)


# Polymorphic groups: key -> (registry getter). Imported lazily to keep this module light.
def _method_registries() -> dict[str, Any]:
    from suite.distill import DISTILLERS
    from suite.prune import PRUNERS
    from suite.quant import QUANTIZERS

    return {"sparsity": PRUNERS, "quant": QUANTIZERS, "distill": DISTILLERS}


def _typed(section: DictConfig, cls: type, key: str) -> Any:
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), section))
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        bad = getattr(e, "full_key", None) or ""
        raise ConfigError(f"{key}.{bad}".rstrip("."), str(e).splitlines()[0]) from None


def method_config(key: str, section: Any) -> Any:
    """A method group's section (`key`: sparsity | quant | distill) typed by the config class its
    method registered, its checks run; raises ConfigError (one line) on bad input."""
    registry = _method_registries()[key]
    if not isinstance(section, dict) or "method" not in section:
        raise ConfigError(f"{key}.method", f"missing; allowed: {', '.join(registry.names())}")
    return _typed(OmegaConf.create(section), registry.config_class(section["method"]), key)


def validate(cfg: DictConfig) -> RunConfig:
    """Resolve and type-check a composed config; raises ConfigError (one line) on bad input."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(getattr(e, "full_key", "config") or "config", str(e).splitlines()[0]) from None
    plain.pop("hydra", None)
    typed_sections = {}
    for key in _method_registries():
        typed_sections[key] = method_config(key, plain.pop(key, None))
        plain[key] = {}  # the group's base class here; the typed section is set below
    run: RunConfig = _typed(OmegaConf.create(plain), RunConfig, "config")
    for key, value in typed_sections.items():
        setattr(run, key, value)
    _check_combination(run)
    return run


def _check_combination(run: RunConfig) -> None:
    """Cross-group rules that no single group can check alone."""
    from suite.upstream.config import check_stage

    check_stage(run)
    for section in (run.sparsity, run.quant, run.distill):
        section.check_run(run)


def compose(overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Compose conf/ with Hydra overrides and validate it (for tests, notebooks and scripts)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from suite.paths import CONF_DIR

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return validate(hydra_compose("config", overrides=list(overrides)))
