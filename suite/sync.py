"""Upload the records that MLflow missed: `python -m suite.sync [--spool DIR] [--tracking-uri URI]`.

`suite/recorded.py` writes each finished stage's record to `<cache>/spool/<run id>.json` before
it logs it to MLflow, and deletes the file once MLflow has it. A file left there means the
tracking server failed at the end of that run. Uploading completes the run (tags, metrics,
`result.json`, status FINISHED) or, when the store no longer has it, creates it again with the
params, config and environment that were logged at its start; then the file is removed.
The start of every cell or grid uploads the spool of its tracking URI (suite/tracking.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from suite.paths import cache_dir

log = logging.getLogger("sparq.sync")


def spool_dir(configured: str | None = None) -> Path:
    return cache_dir(configured) / "spool"


def pending(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.json")) if spool.is_dir() else []


def _run_of(client, data: dict) -> str:
    """The spooled run's id in the store, re-created there when it is missing."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(data["run_id"]).info.run_id
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    exp = client.get_experiment_by_name(data["experiment"])
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(data["experiment"])
    run = client.create_run(exp_id, run_name=data.get("run_name"),
                            tags={**data.get("open_tags", {}), "spooled_run_id": data["run_id"]})
    run_id = run.info.run_id
    items = sorted((data.get("params") or {}).items())
    from mlflow.entities import Param

    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in items[i:i + 100]])
    if "config_yaml" in data:
        client.log_text(run_id, data["config_yaml"], "config.yaml")
    if "environment" in data:
        client.log_dict(run_id, data["environment"], "environment.json")
    return run_id


def upload(path: Path, uri: str | None = None) -> str:
    """Upload one spooled record; returns the run id it now lives in. Removes the file."""
    import mlflow
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    data = json.loads(path.read_text())
    uri = uri or data["tracking_uri"]
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)  # proxied artifacts (mlflow-artifacts:/) resolve against it
    try:
        client = MlflowClient(uri)
        run_id = _run_of(client, data)
        from mlflow.tracking._tracking_service import utils

        utils._artifact_repos_cache.pop(run_id, None)  # a repo cached for the dead server's address
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in data.get("metrics", {}).items()]
        tags = [RunTag(k, str(v)) for k, v in {**data.get("tags", {}), "synced_from_spool": "true"}.items()]
        for i in range(0, max(len(metrics), len(tags)), 100):  # MLflow batches: at most 1000 / 100
            client.log_batch(run_id, metrics=metrics[i:i + 100], tags=tags[i:i + 100])
        client.log_dict(run_id, data["record"], "result.json")
        client.set_terminated(run_id, "FINISHED")
    finally:
        mlflow.set_tracking_uri(previous)
    path.unlink()
    return run_id


def upload_pending(uri: str, spool: Path | None = None) -> int:
    """Upload the spooled records meant for `uri` (best effort: a failure is logged, kept)."""
    done = 0
    for path in pending(spool or spool_dir()):
        try:
            if json.loads(path.read_text()).get("tracking_uri") != uri:
                continue
            run_id = upload(path, uri)
            log.info("uploaded spooled record %s to run %s", path.name, run_id)
            done += 1
        except Exception as e:  # noqa: BLE001 - keep the file; the next start tries again
            log.warning("could not upload spooled record %s: %s: %s", path, type(e).__name__, e)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suite.sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spool", type=Path, default=None, help="spool folder (default: <cache>/spool)")
    parser.add_argument("--tracking-uri", default=None,
                        help="upload here instead of the URI each record was meant for")
    args = parser.parse_args(argv)
    import os

    from suite.paths import HTTP_DEFAULTS

    for key, value in HTTP_DEFAULTS.items():  # a still-dead server: seconds, not minutes
        os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = pending(args.spool or spool_dir())
    failed = 0
    for path in files:
        try:
            run_id = upload(path, args.tracking_uri)
            print(f"{path.name}: uploaded (run {run_id})")
        except Exception as e:  # noqa: BLE001 - one line per file, the others still go
            failed += 1
            print(f"{path}: not uploaded ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                  file=sys.stderr)
    print(f"{len(files) - failed} of {len(files)} spooled record(s) uploaded")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
