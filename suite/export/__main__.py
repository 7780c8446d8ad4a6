"""`python -m suite.export RUN_ID --format safetensors|packed|onnx --out DIR`: one format of a
recorded cell's student, from the MLflow store, checked against the cell's own outputs.

DIR gets a model directory: config.json, the tokenizer, sparq.json, the format's files
(model.safetensors | encoder.sparqpk + rest.safetensors | model.onnx) and check.safetensors.
Load it with `suite.export.load(DIR, format)`, or `kernels.load_model(DIR)` for packed (the
model on the sparse int8 kernels); ONNX runs under ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from suite.errors import SparqError
from suite.export import ARTIFACT_DIR, FORMATS, REST_FILE, verify


def _download(run_id: str, name: str, dst: Path, uri: str) -> Path:
    import mlflow.artifacts

    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{ARTIFACT_DIR}/{name}",
                                                    dst_path=str(dst), tracking_uri=uri))


def lean_rest(src: Path, packed_layers, out: Path) -> None:
    """The tensors of `src` outside the packed layers (what a packed model reads besides them)."""
    from safetensors.torch import load_file, save_file

    inside = lambda k: any(k.startswith(p + ".") for p in packed_layers)  # noqa: E731
    save_file({k: v for k, v in load_file(str(src)).items() if not inside(k)}, str(out))


def export_run(run_id: str, fmt: str, out: Path, uri: str) -> dict:
    """Write format `fmt` of run `run_id`'s student into `out` (new or empty); returns its manifest."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from kernels.bundle import MANIFEST, file_sha256

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SparqError(f"--out: {out} exists and is not an empty directory")
    client = MlflowClient(uri)
    try:
        client.get_run(run_id)
        listed = {Path(a.path).name for a in client.list_artifacts(run_id, ARTIFACT_DIR)}
    except MlflowException as e:
        raise SparqError(f"RUN_ID: no run {run_id} in {uri} ({str(e).splitlines()[0][:200]})") from None
    if MANIFEST not in listed:
        raise SparqError(f"RUN_ID: run {run_id} has no exported student (dense cells export none; "
                         "compressed cells export export.formats)")
    with tempfile.TemporaryDirectory(prefix="sparq-export-") as tmp:
        tmp = Path(tmp)
        manifest = json.loads(_download(run_id, MANIFEST, tmp, uri).read_text())
        entry = manifest["formats"].get(fmt)
        if entry is None:
            why = manifest.get("skipped", {}).get(fmt, "not in export.formats of that cell")
            raise SparqError(f"--format: run {run_id} has no {fmt} export ({why})")
        names = [*manifest["common"], manifest["check"]["file"], entry["file"], *([entry["rest"]] if "rest" in entry else [])]
        got = {n: _download(run_id, n, tmp, uri) for n in dict.fromkeys(names)}
        out.mkdir(parents=True, exist_ok=True)
        for name in [*manifest["common"], manifest["check"]["file"], entry["file"]]:
            shutil.copyfile(got[name], out / name)
        entry = dict(entry)
        if fmt == "packed":
            lean_rest(got[entry["rest"]], manifest["packed"]["layers"], out / REST_FILE)
            entry["rest"] = REST_FILE
    manifest["formats"] = {fmt: entry}
    if fmt != "packed":
        manifest.pop("packed", None)
    files = {*manifest["common"], manifest["check"]["file"], entry["file"], *([entry["rest"]] if "rest" in entry else [])}
    manifest["sha256"] = {f: file_sha256(out / f) for f in sorted(files)}
    manifest.setdefault("cell", {})["exported_from_run"] = run_id
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def main(argv: list[str] | None = None) -> int:
    from suite.paths import tracking_uri

    ap = argparse.ArgumentParser(prog="python -m suite.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_id", metavar="RUN_ID", help="MLflow run id of a compressed cell")
    ap.add_argument("--format", required=True, choices=FORMATS)
    ap.add_argument("--out", required=True, type=Path, help="new or empty directory")
    ap.add_argument("--tracking-uri", default=None, help="MLflow store (default: MLFLOW_TRACKING_URI or the project's)")
    ap.add_argument("--no-check", action="store_true", help="skip the reload check on the cell's outputs")
    a = ap.parse_args(argv)
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from kernels import BundleError, PackedFormatError

    try:
        manifest = export_run(a.run_id, a.format, a.out, a.tracking_uri or tracking_uri())
        print(f"wrote {a.format} of run {a.run_id} (cell {manifest['cell'].get('cell_id')}) to {a.out}")
        if not a.no_check:
            res = verify(a.out, a.format)
            exact = "exact" if res["max_abs_diff"] == 0 else f"max |diff| {res['max_abs_diff']:.3g}"
            print(f"check on {manifest['check']['examples']} eval examples against the cell's own outputs: {exact} "
                  f"(outputs up to {res['max_abs_output']:.3g}), argmax agreement {res['argmax_agreement']:.0%}")
    except (SparqError, BundleError, PackedFormatError) as e:
        print(f"sparq: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
