"""Upload the records that MLflow missed: `python -m suite.sync [--spool DIR] [--tracking-uri URI]`.

`suite/recorded.py` writes each finished stage's record to `<cache>/spool/<run id>.json` before
it logs it to MLflow, and deletes the file once MLflow has it. A file left there means the
tracking server failed at the end of that run. Uploading completes the run (tags, metrics,
`result.json`, status FINISHED) or, when the store no longer has it, creates it again with the
params, config and environment that were logged at its start; then the file is removed.
The start of every cell or grid uploads the spool of its tracking URI (suite/tracking.py).

Exactly once: the spooled run's id is the key. A file whose run the store already holds FINISHED
with its record is a no-op (said so, the file removed); a file is checked (keys, numbers, the
record against `CellRecord`) before any run is created or touched; a run this sync creates is
deleted again when filling it fails (no RUNNING orphans); the file goes only once the run is FINISHED.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from suite.errors import Parser, SparqError, cli_errors, debug, one_line
from suite.paths import cache_dir

log = logging.getLogger("sparq.sync")


def spool_dir(configured: str | None = None) -> Path:
    return cache_dir(configured) / "spool"


def pending(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.json")) if spool.is_dir() else []


@dataclass(frozen=True)
class Uploaded:
    """What one sync of a spool file did: the run that holds the record now, and whether it was
    there already (nothing uploaded) or made by this sync (the original run was not in the store)."""

    run_id: str
    already: bool = False
    created: bool = False

    def line(self, name: str) -> str:
        if self.already:
            return f"{name}: already uploaded (run {self.run_id} is FINISHED with its record); nothing to do"
        return f"{name}: uploaded (run {self.run_id}{', re-created' if self.created else ''})"


def read_spool(path: Path) -> dict:
    """A spool file's content, checked before anything reaches the store: its keys, numbers and
    record (`suite.report.validate`). SparqError naming the file and why."""
    from suite.report.validate import InvalidRecord, check_record, parse_record

    try:
        data = parse_record(path.read_bytes())
    except InvalidRecord as e:
        raise SparqError(f"{path.name}: {e}") from None
    if not isinstance(data, dict):
        raise SparqError(f"{path.name}: not a spooled record (a JSON {type(data).__name__})")
    for key in ("run_id", "experiment"):
        if not isinstance(data.get(key), str) or not 0 < len(data[key]) <= 256:
            raise SparqError(f"{path.name}: '{key}' missing or not a short string")
    for key in ("metrics", "tags", "params", "open_tags"):
        if not isinstance(data.get(key, {}), dict):
            raise SparqError(f"{path.name}: '{key}' is not an object")
    bad = [k for k, v in data.get("metrics", {}).items()
           if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    if bad:
        raise SparqError(f"{path.name}: metric '{bad[0][:80]}' is not a number")
    try:
        record = check_record(data.get("record"))
    except InvalidRecord as e:
        raise SparqError(f"{path.name}: record: {e}") from None
    if record.get("run_id") not in (None, data["run_id"]):
        raise SparqError(f"{path.name}: record of run {record['run_id']}, not of the spooled run {data['run_id']}")
    return data


def _find_run(client, data: dict):
    """The spooled run in the store: the run itself, else the one an earlier sync re-created for
    it (tag spooled_run_id); None when neither is there (deleted runs do not count)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(data["run_id"])
        if run.info.lifecycle_stage != "deleted":
            return run
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    exp = client.get_experiment_by_name(data["experiment"])
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], f"tags.spooled_run_id = '{data['run_id']}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def _has_record(client, run_id: str) -> bool:
    return any(f.path == "result.json" for f in client.list_artifacts(run_id))


def _create_run(client, data: dict) -> str:
    """A new run for a spooled run the store lost, with the params, config and environment logged
    at its start; deleted again when any of that fails (no RUNNING orphan is left)."""
    from mlflow.entities import Param

    exp = client.get_experiment_by_name(data["experiment"])
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(data["experiment"])
    run = client.create_run(exp_id, run_name=data.get("run_name"),
                            tags={**data.get("open_tags", {}), "spooled_run_id": data["run_id"]})
    run_id = run.info.run_id
    try:
        items = sorted((data.get("params") or {}).items())
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in items[i:i + 100]])
        if "config_yaml" in data:
            client.log_text(run_id, str(data["config_yaml"]), "config.yaml")
        if "environment" in data:
            client.log_dict(run_id, data["environment"], "environment.json")
    except BaseException:
        _discard(client, run_id)
        raise
    return run_id


def _discard(client, run_id: str) -> None:
    try:
        client.delete_run(run_id)
    except Exception as e:  # noqa: BLE001 - the store is failing; say what is left behind
        log.warning("could not delete the half-made run %s: %s", run_id, e)


def upload(path: Path, uri: str | None = None) -> Uploaded:
    """Upload one spooled record, exactly once: the spooled run's id is the key (a run of the store
    that already holds it FINISHED makes this a no-op). The file is checked before any run is
    touched, and removed only once the run is FINISHED with its record."""
    import mlflow
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    data = read_spool(path)
    uri = uri or data.get("tracking_uri")
    if not isinstance(uri, str) or not uri:
        raise SparqError(f"{path.name}: no tracking_uri; pass --tracking-uri")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)  # proxied artifacts (mlflow-artifacts:/) resolve against it
    try:
        client = MlflowClient(uri)
        run = _find_run(client, data)
        if run is not None and run.info.status == "FINISHED" and _has_record(client, run.info.run_id):
            path.unlink()
            return Uploaded(run.info.run_id, already=True)
        created = run is None
        run_id = _create_run(client, data) if created else run.info.run_id
        try:
            from mlflow.tracking._tracking_service import utils

            utils._artifact_repos_cache.pop(run_id, None)  # a repo cached for the dead server's address
            now = int(time.time() * 1000)
            metrics = [Metric(k, float(v), now, 0) for k, v in data.get("metrics", {}).items() if v is not None]
            tags = [RunTag(k, str(v)) for k, v in {**data.get("tags", {}), "synced_from_spool": "true"}.items()]
            for i in range(0, max(len(metrics), len(tags)), 100):  # MLflow batches: at most 1000 / 100
                client.log_batch(run_id, metrics=metrics[i:i + 100], tags=tags[i:i + 100])
            client.log_dict(run_id, data["record"], "result.json")
            client.set_terminated(run_id, "FINISHED")
            if client.get_run(run_id).info.status != "FINISHED":
                raise SparqError(f"{path.name}: run {run_id} is not FINISHED after the upload")
        except BaseException:
            if created:
                _discard(client, run_id)
            raise
    finally:
        mlflow.set_tracking_uri(previous)
    path.unlink()
    return Uploaded(run_id, created=created)


def upload_pending(uri: str, spool: Path | None = None) -> int:
    """Upload the spooled records meant for `uri` (best effort: a failure is logged, kept)."""
    done = 0
    for path in pending(spool or spool_dir()):
        try:
            if json.loads(path.read_text()).get("tracking_uri") != uri:
                continue
            result = upload(path, uri)
            log.info("%s", result.line(f"spooled record {path.name}"))
            done += not result.already
        except Exception as e:  # noqa: BLE001 - keep the file; the next start tries again
            log.warning("could not upload spooled record %s: %s", path, one_line(e))
    return done


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m suite.sync", description=__doc__.split("\n\n")[0])
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
            print(upload(path, args.tracking_uri).line(path.name))
        except Exception as e:  # noqa: BLE001 - one line per file, the others still go
            if debug():
                raise
            failed += 1
            why = one_line(e).removeprefix(f"{path.name}: ")
            print(f"sparq: error: {path.name}: not uploaded ({why}); the file is kept", file=sys.stderr)
    print(f"{len(files) - failed} of {len(files)} spooled record(s) uploaded or already there")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
