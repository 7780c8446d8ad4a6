"""One lifecycle for every recorded stage (cell, teacher, upstream): `recorded_run`.

    with recorded_run(cfg, kind="cell", cell_id=cid, experiment=exp, params=p, tags=t) as run:
        metrics, tags = compute()
        run.finish(record, metrics, tags)

Opens the MLflow run, tags it (cell_id, kind, suite.version, git_sha, owner), logs the params,
`config.yaml` and `environment.json`; `finish` logs tags and metrics and writes `result.json`.
An exception inside the block marks the run FAILED with an `error` tag and re-raises.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("sparq")


def _as_dict(record: Any) -> dict:
    """A CellRecord (pydantic v2 model or dataclass) or a plain dict, as JSON-ready data."""
    if hasattr(record, "model_dump"):
        return record.model_dump(mode="json")
    import dataclasses

    if dataclasses.is_dataclass(record):
        return dataclasses.asdict(record)
    return dict(record)


@dataclass
class RecordedRun:
    """The handle `recorded_run` yields: the MLflow run id and `finish`."""

    run_id: str
    cell_id: str
    kind: str
    finished: bool = False

    def finish(self, record: Any, metrics: dict[str, float], tags: dict[str, str]) -> None:
        """Record the outcome: tags, metrics and the `result.json` artifact."""
        import mlflow

        mlflow.set_tags(tags)
        mlflow.log_metrics(metrics)
        mlflow.log_dict(_as_dict(record), "result.json")
        self.finished = True


@contextlib.contextmanager
def recorded_run(cfg, *, kind: str, cell_id: str, experiment: str, params: dict[str, str],
                 tags: dict[str, str], run_name: str | None = None,
                 data_files: Iterable[Path] = ()) -> Iterator[RecordedRun]:
    """Open the MLflow run of one stage and close it honestly (FINISHED / FAILED + error)."""
    from omegaconf import OmegaConf

    from suite import tracking

    mlflow = tracking.setup_mlflow(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"cell_id": cell_id, "kind": kind, "suite.version": tracking.__version__,
                         "git_sha": tracking.git_sha(), **tracking.run_owner(), **tags})
        tracking.log_params(mlflow, params)
        mlflow.log_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)), "config.yaml")
        mlflow.log_dict(tracking.environment(data_files), "environment.json")
        handle = RecordedRun(run.info.run_id, cell_id, kind)
        try:
            yield handle
        except Exception as e:
            mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:5000])
            mlflow.end_run(status="FAILED")
            raise
