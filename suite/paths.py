"""Project locations and the MLflow store default."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
RESULTS_DIR = ROOT / "results"


def cache_dir(configured: str | None = None) -> Path:
    return Path(configured or os.environ.get("SPARQ_CACHE_DIR") or ROOT / ".cache")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlflow.db'}"


# A dead tracking server must cost seconds, not MLflow's default retries (suite.tracking, suite.sync).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
