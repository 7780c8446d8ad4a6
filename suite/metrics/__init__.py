"""Task metrics through the `evaluate` API, loaded offline from modules shipped in this package."""

from __future__ import annotations

import functools
from pathlib import Path

from suite.config import TaskConfig

MODULES = Path(__file__).parent / "modules"
PERCENT_MODULES = {"squad"}  # modules that already report percent (the official SQuAD script)


@functools.cache
def load_metric(module: str, config_name: str | None = None):
    import evaluate

    path = MODULES / f"sparq_{module}" / f"sparq_{module}.py"
    if not path.is_file():
        options = sorted(p.name.removeprefix("sparq_") for p in MODULES.iterdir() if p.is_dir())
        raise KeyError(f"no metric module '{module}'; allowed: {', '.join(options)}")
    return evaluate.load(str(path), config_name)


def compute_metrics(task: TaskConfig, predictions, references) -> dict[str, float]:
    """`eval_<metric>` for every metric of the task, plus `eval_primary` in percent."""
    metric = load_metric(task.metric, None if task.metric == "squad" else task.metric_config)
    values = metric.compute(predictions=predictions, references=references)
    out = {f"eval_{k}": float(v) for k, v in values.items()}
    scale = 1.0 if task.metric in PERCENT_MODULES else 100.0
    out["eval_primary"] = scale * float(values[task.primary])
    return out


@functools.cache
def _squad_module():
    """The shipped SQuAD module's own functions (the same normalisation the eval reports)."""
    import importlib.util

    path = MODULES / "sparq_squad" / "sparq_squad.py"
    spec = importlib.util.spec_from_file_location("sparq_squad_functions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def squad_scores(predictions, references, metric: str) -> list[float]:
    """Per-example SQuAD score in percent (max over gold answers): 'exact_match' or 'squad_f1'."""
    mod = _squad_module()
    fn = mod.exact_match if metric == "exact_match" else mod.f1
    pred = {p["id"]: p["prediction_text"] for p in predictions}
    return [100.0 * max(fn(pred.get(ref["id"], ""), t) for t in ref["answers"]["text"]) for ref in references]
