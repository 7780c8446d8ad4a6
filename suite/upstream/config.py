"""Typed config of the Prune-OFA upstream stage (`conf/upstream/*.yaml`, key `upstream`).

The stage itself is the top-level key `stage`:
  finetune  (default) task-specific compression during fine-tuning (the existing path);
  upstream  MLM pre-training of the encoder on an unlabeled corpus, pruned on the gradual
            schedule of the `sparsity` group and distilled from the dense encoder;
  transfer  fine-tune a task with the upstream masks locked (`sparsity` then names the upstream
            pruning; `upstream.ref` may point at an existing upstream cell id or directory).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from suite.errors import ConfigError

STAGES = ("finetune", "upstream", "transfer")
CORPORA = ("tasks", "files", "hub")


@dataclass
class UpstreamConfig:
    name: str = "tasks"  # label of the corpus preset (conf/upstream/<name>.yaml)
    corpus: str = "tasks"  # tasks: TRAIN splits of the data dir | files: local text files | hub: a hub dataset
    tasks: list[str] = field(default_factory=lambda: ["sst2", "cola", "mrpc", "qnli", "squad"])
    files: list[str] = field(default_factory=list)  # corpus=files: text files, one sentence/paragraph per line
    hub_path: str = "wikimedia/wikipedia"  # corpus=hub
    hub_name: str | None = "20231101.en"
    hub_column: str = "text"
    max_sentences: int = 20000  # cap on corpus lines (sentences / paragraphs), seeded sample
    max_length: int = 128  # sequence length of the MLM examples
    pack: bool = True  # concatenate tokenized lines into max_length chunks (run_mlm's group_texts)
    mlm_probability: float = 0.15
    steps: int = 300  # optimizer steps (capped by profile.max_steps)
    batch_size: int = 16
    lr: float = 1.0e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    temperature: float = 2.0  # KD on the MLM logits (only when the model ships a trained MLM head)
    alpha_mlm: float = 0.5
    alpha_kd: float = 0.5
    alpha_hidden: float = 1.0  # per-layer hidden-state MSE against the dense encoder
    ref: str | None = None  # transfer: an upstream cell id (in the cache) or a directory; null: from this config

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise ConfigError("upstream.corpus", f"'{self.corpus}'; allowed: {', '.join(CORPORA)}")
        if self.corpus == "files" and not self.files:
            raise ConfigError("upstream.files", "corpus=files needs at least one text file")
        if self.corpus == "tasks" and not self.tasks:
            raise ConfigError("upstream.tasks", "corpus=tasks needs at least one task name")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ConfigError("upstream.mlm_probability", f"{self.mlm_probability}; must be in (0, 1)")
        for key in ("max_sentences", "steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"upstream.{key}", f"{getattr(self, key)}; must be >= 1")
        if not 8 <= self.max_length <= 4096:
            raise ConfigError("upstream.max_length", f"{self.max_length}; must be in [8, 4096]")
        if self.lr <= 0 or self.temperature <= 0:
            raise ConfigError("upstream.lr", "lr and temperature must be > 0")
        if min(self.alpha_mlm, self.alpha_kd, self.alpha_hidden) < 0:
            raise ConfigError("upstream.alpha_mlm", "alpha_mlm, alpha_kd and alpha_hidden must be >= 0")


def check_stage(run) -> None:
    """Cross-group rules of the stage (called from config._check_combination)."""
    if run.stage not in STAGES:
        raise ConfigError("stage", f"'{run.stage}'; allowed: {', '.join(STAGES)}")
    if run.stage in ("upstream", "transfer") and not run.sparsity.prunes and not (
            run.stage == "transfer" and run.upstream.ref):
        raise ConfigError("sparsity", f"stage={run.stage} prunes upstream: pick a pruning method "
                          "(gmp, block, nm), or set upstream.ref for a transfer")
    if run.stage == "upstream" and run.quant.quantized:
        raise ConfigError("quant", "stage=upstream trains fp32; quantize at transfer (quant=qat)")


def effective_steps(cfg) -> int:
    cap = cfg.profile.max_steps
    return min(cfg.upstream.steps, cap) if cap else cfg.upstream.steps


def upstream_config(cfg):
    """The upstream cell a transfer (or upstream) cell stands on."""
    return dataclasses.replace(cfg, stage="upstream", upstream=dataclasses.replace(cfg.upstream, ref=None))
