"""Markdown tables in the papers' layout: rows model x sparsity x bits, columns the tasks.

Pure functions of `Group`s (and the typed-in references): no I/O here.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence

from suite.report.intervals import delta_text
from suite.report.records import Group, baseline_for, fmt, fmt_pm
from suite.report.references import ANCHORS, REFERENCES, Reference, find_reference

METRIC_ORDER = ("exact_match", "accuracy", "f1", "mcc", "pearson", "spearmanr")
TASK_ORDER = ("squad", "mnli", "qqp", "qnli", "sst2", "mrpc", "stsb", "cola", "rte")
ABBREV = {"exact_match": "EM", "accuracy": "acc", "f1": "F1", "mcc": "MCC", "pearson": "Pearson",
          "spearmanr": "Spearman", "accuracy_mm": "acc-mm"}


def metric_names(groups: Sequence[Group]) -> list[str]:
    names = {m for g in groups for c in g.cells for m in c.eval_percent()}
    return sorted(names, key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else 99, m))


def task_sort(task: str) -> tuple:
    return (TASK_ORDER.index(task) if task in TASK_ORDER else 99, task)


def md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def ours_text(group: Group, metrics: Sequence[str]) -> str:
    return " / ".join(fmt_pm(group.mean("%" + m), group.std("%" + m)) for m in metrics)


def signed(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:+.2f}"


def compression(groups: Sequence[Group], metric: str) -> float:
    vals = [v for g in groups for v in g.values(metric)]
    return statistics.fmean(vals) if vals else math.nan


def experiment_table(experiment: str, groups: Sequence[Group], all_groups: Sequence[Group]) -> str:
    """One experiment's table, with the paper numbers and the delta to our dense baseline."""
    tasks = sorted({g.task for g in groups}, key=task_sort)
    metrics = {t: metric_names([g for g in groups if g.task == t]) for t in tasks}
    rows: dict[tuple, dict[str, Group]] = defaultdict(dict)
    for g in groups:
        rows[g.config_key][g.task] = g
    show_variant = any(g.variant for g in groups)
    refs: list[Reference] = []

    head = ["model", "sparsity", "bits", "distill", "init", "budget"] + (["variant"] if show_variant else []) + ["seeds"]
    for t in tasks:
        m = "/".join(ABBREV.get(x, x) for x in metrics[t])
        head += [f"{t} {m}", f"{t} paper", f"{t} Δ dense"]
    head += ["compression nominal", "compression packed"]
    lines = [f"## {md_escape(experiment)}", "",
             "Ours: mean ± std over seeds (percent). Paper: reference numbers (see notes). "
             "Δ dense: our eval_primary minus our dense fp32 baseline (same model, task, profile, optimizer steps), "
             "with its 95% interval (paired bootstrap over eval examples and seeds).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _key, by_task in rows.items():
        g0 = next(iter(by_task.values()))
        seeds = sorted({s for g in by_task.values() for s in g.seeds})
        cells = [g0.model_label, g0.sparsity_label, g0.bits_label, g0.distill_method, g0.init,
                 f"{g0.budget} ({g0.steps or '?'} steps, {g0.train_examples or '?'} ex.)"]
        cells += [g0.variant] if show_variant else []
        cells += [",".join(seeds)]
        for t in tasks:
            g = by_task.get(t)
            if g is None:
                cells += ["", "", ""]
                continue
            match = find_reference(g.paper, g.model, t, g.sparsity_pattern, g.sparsity_target, g.weight_bits)
            ref_text = ""
            if match:
                if match.ref not in refs:
                    refs.append(match.ref)
                n = refs.index(match.ref) + 1
                who = "" if match.exact_model else f" ({match.ref.model})"
                ref_text = f"{match.ref.text()}{who} [{n}]"
            base = baseline_for(g, all_groups)
            cells += [ours_text(g, metrics[t]), ref_text, "base" if base is g else delta_text(g, base)]
        grs = list(by_task.values())
        cells += [f"{fmt(compression(grs, 'compression_nominal'), 1)}x",
                  f"{fmt(compression(grs, 'compression_packed'), 2)}x"]
        lines.append("| " + " | ".join(md_escape(c) for c in cells) + " |")
    lines.append("")
    if refs:
        lines.append("Paper references:")
        lines += [f"- [{i}] {r.label()}, {r.task}: {r.text()} ({'/'.join(ABBREV.get(k, k) for k in r.metrics)})"
                  f"{'; ' + r.note if r.note else ''}{f'; mean of {r.seeds} seeds' if r.seeds else ''}. "
                  f"Source: {r.source}." for i, r in enumerate(refs, 1)]
        lines.append("")
    paper = groups[0].paper if groups else ""
    anchors = [a for a in ANCHORS if a.paper == paper]
    if anchors:
        lines.append("Other reference facts of this paper (no row of ours to sit beside):")
        lines += [f"- {a.text} Source: {a.source}." for a in anchors]
        lines.append("")
    return "\n".join(lines)


def reference_table(paper: str) -> str:
    """The paper's own numbers in its layout (rows model x sparsity x bits), for side-by-side reading."""
    refs = [r for r in REFERENCES if r.paper == paper]
    if not refs:
        return ""
    tasks = sorted({r.task for r in refs}, key=task_sort)
    rows: dict[str, dict[str, Reference]] = defaultdict(dict)
    for r in refs:
        rows[r.label()][r.task] = r
    lines = [f"### {paper}: paper reference numbers", "", "| model | " + " | ".join(tasks) + " |",
             "|" + "---|" * (len(tasks) + 1)]
    for label, by_task in rows.items():
        lines.append(f"| {label} | " + " | ".join(by_task[t].text() if t in by_task else "" for t in tasks) + " |")
    sources = sorted({r.source for r in refs})
    lines += ["", "Sources: " + "; ".join(sources) + ".", ""]
    return "\n".join(lines)


def all_tables(groups: Sequence[Group]) -> dict[str, str]:
    """Experiment name (MLflow, with profile) -> Markdown."""
    by_exp: dict[str, list[Group]] = defaultdict(list)
    for g in groups:
        by_exp[g.first.experiment].append(g)
    out = {}
    for exp, gs in sorted(by_exp.items()):
        text = experiment_table(exp, gs, groups)
        ref = reference_table(gs[0].paper)
        out[exp] = text + ("\n" + ref if ref else "")
    from suite.report.curve_tables import budget_tables, curve_tables

    out.update(curve_tables(groups))
    out.update(budget_tables(groups))
    return out
