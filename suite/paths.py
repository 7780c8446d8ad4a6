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
