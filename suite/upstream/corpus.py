"""The unlabeled upstream corpus: lines of text (sentences, contexts or paragraphs).

corpus=tasks reads only the TRAIN file of each named task in the data dir (its text columns; the
labels are ignored) and refuses any file that some task evaluates on (every `files.eval` in
conf/task/): the upstream stage must never see a dev split. Tasks without a train file in the data
dir add nothing (and are listed as skipped). corpus=files reads local text files, one line each;
corpus=hub streams a hub dataset (e.g. English Wikipedia, one line per paragraph).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from suite.config import TaskConfig
from suite.errors import SparqError
from suite.paths import CONF_DIR
from suite.upstream.config import UpstreamConfig

log = logging.getLogger("sparq.upstream")


@dataclass
class Corpus:
    lines: list[str]
    files: list[str] = field(default_factory=list)  # files read (relative to the data dir when under it)
    skipped: list[str] = field(default_factory=list)  # tasks with no train file here
    source: str = "tasks"
    total_lines: int = 0  # before the max_sentences cap

    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.lines).encode()).hexdigest()

    def stats(self) -> dict[str, float]:
        return {"corpus_lines": float(len(self.lines)), "corpus_lines_available": float(self.total_lines),
                "corpus_chars": float(sum(len(x) for x in self.lines)), "corpus_files": float(len(self.files))}


def task_config(name: str) -> TaskConfig:
    path = CONF_DIR / "task" / f"{name}.yaml"
    if not path.is_file():
        allowed = sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml"))
        raise SparqError(f"upstream.tasks: unknown task '{name}'; allowed: {', '.join(allowed)}")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(path)))


def eval_files() -> set[str]:
    """Every file a task is evaluated on (relative to the data dir): never upstream input."""
    out = set()
    for path in (CONF_DIR / "task").glob("*.yaml"):
        files = OmegaConf.load(path).get("files") or {}
        out.update(str(v) for k, v in files.items() if k != "train")
    return out


def corpus_files(cfg: UpstreamConfig, data_dir: str | None) -> tuple[list[tuple[str, Path]], list[str]]:
    """([(task, train file)], skipped tasks) for corpus=tasks; checks before anything is read."""
    if data_dir is None:
        raise SparqError("upstream.corpus=tasks reads the TRAIN files of the data dir: set data_dir "
                         "(SPARQ_DATA_DIR), or use upstream=wikipedia / upstream.corpus=files")
    root, forbidden = Path(data_dir), eval_files()
    found, skipped = [], []
    for name in cfg.tasks:
        t = task_config(name)
        rel = t.files.get("train")
        if rel is None or not (root / rel).is_file():
            skipped.append(name)
            continue
        if rel in forbidden or rel == t.files.get("eval"):
            raise SparqError(f"upstream corpus: {rel} is an evaluation file; refusing to pre-train on it")
        found.append((name, root / rel))
    if not found:
        raise SparqError(f"upstream.tasks: none of {cfg.tasks} has a train file under {root}")
    return found, skipped


def task_lines(name: str, path: Path) -> list[str]:
    """The text of one task's train file: every sentence / question / context (labels unused)."""
    from suite.tasks import glue

    t = task_config(name)
    if t.kind == "qa":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)["data"]
        out = []
        for article in data:
            for para in article["paragraphs"]:
                out.append(para["context"])
                out.extend(qa["question"] for qa in para["qas"])
        return out
    rows = glue.read_glue_tsv(path, t)
    return rows["text_a"] + rows.get("text_b", [])


def hub_lines(cfg: UpstreamConfig, seed: int) -> list[str]:
    from datasets import load_dataset

    ds = load_dataset(cfg.hub_path, cfg.hub_name, split="train", streaming=True)
    ds = ds.shuffle(seed=seed, buffer_size=10_000)
    out: list[str] = []
    for row in ds:
        out.extend(p.strip() for p in str(row[cfg.hub_column]).split("\n") if len(p.strip()) > 20)
        if len(out) >= cfg.max_sentences:
            break
    return out[: cfg.max_sentences]


def load_corpus(cfg: UpstreamConfig, data_dir: str | None, seed: int) -> Corpus:
    """The corpus lines: deduplicated, seeded sample of at most max_sentences lines."""
    if cfg.corpus == "hub":
        lines = hub_lines(cfg, seed)
        return Corpus(lines, [f"hub:{cfg.hub_path}/{cfg.hub_name}"], [], "hub", len(lines))
    files, skipped, raw = [], [], []
    if cfg.corpus == "tasks":
        found, skipped = corpus_files(cfg, data_dir)
        for name, path in found:
            raw += task_lines(name, path)
            files.append(str(path.relative_to(data_dir)) if path.is_relative_to(data_dir) else str(path))
        if skipped:
            log.info("upstream corpus: no train file for %s here; they add nothing", ", ".join(skipped))
    else:
        forbidden = eval_files()
        for f in cfg.files:
            path = Path(f).expanduser()
            rel = str(path.relative_to(data_dir)) if data_dir and path.is_relative_to(data_dir) else str(path)
            if rel in forbidden:
                raise SparqError(f"upstream.files: {rel} is an evaluation file; refusing to pre-train on it")
            if not path.is_file():
                raise SparqError(f"upstream.files: {path} does not exist")
            with open(path, encoding="utf-8") as fh:
                raw += fh.read().splitlines()
            files.append(rel)
    seen, lines = set(), []
    for line in raw:
        line = line.strip()
        if line and line not in seen:
            seen.add(line)
            lines.append(line)
    total = len(lines)
    random.Random(seed).shuffle(lines)
    return Corpus(lines[: cfg.max_sentences], files, skipped, cfg.corpus, total)
