"""leaderboard.json: the cells' `CellRecord`s (suite/record.py) in one document, its JSON Schema
generated from the same classes, and what `--merge` needs: reading boards (incl. the v1 layout of
before the records), each row's machine, and de-duplication by cell id + machine.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from suite.errors import SparqError
from suite.record import CellRecord
from suite.report.validate import InvalidRecord, Skipped, check_record, checked

log = logging.getLogger("sparq.report")
BOARD_VERSION = 2
SCHEMA_FILE = "leaderboard.schema.json"
# CPU flags that decide which kernel path runs (kernels.cpu.kernel_path): what a reader compares.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "amx_tile", "amx_int8")


class Board(BaseModel):
    """leaderboard.json: one `CellRecord` per recorded cell and machine."""

    model_config = ConfigDict(extra="forbid", title="sparq leaderboard")

    schema_version: Literal[2] = BOARD_VERSION
    generated_by: str = Field("python -m suite.report", description="the command that wrote this file")
    sources: list[str] = Field(default_factory=list, description=(
        "where the records came from, host-free: 'mlflow' (the local store) or 'board:<dir>/leaderboard.json' "
        "(a merged board)"))
    records: list[CellRecord] = Field(description="one record per cell id and machine (suite/record.py)")


def schema() -> dict:
    """The JSON Schema of leaderboard.json, generated from `Board` / `CellRecord`."""
    s = Board.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_FILE, **s}


def document(records: Iterable[dict], sources: Sequence[str] = ()) -> dict:
    """leaderboard.json as a dict, every record validated against `CellRecord`."""
    board = Board(sources=list(sources), records=[CellRecord.model_validate(r) for r in records])
    return json.loads(board.model_dump_json())


# ------------------------------------------------------------------ machines

def machine(rec: dict) -> dict:
    """The machine a record was measured on: CPU model, ISA flags, threads, kernel path, versions."""
    env, lat = rec.get("environment") or {}, rec.get("latency") or {}
    flags = env.get("cpu_flags") or []
    flags = flags.split() if isinstance(flags, str) else list(flags)
    return {"cpu_model": env.get("cpu_model") or "unknown CPU",
            "isa": [f for f in ISA_FLAGS if f in flags],
            "threads": env.get("threads") or lat.get("threads"),
            "kernel_path": lat.get("kernel_path"),
            "torch": env.get("torch"), "transformers": env.get("transformers"), "python": env.get("python")}


def machine_label(rec: dict) -> str:
    """Short and host-free: "AMD EPYC · 2 threads · avx512_vnni" (the kernel path; else "<best VNNI/AVX2 flag> cpu")."""
    m = machine(rec)
    best = next((f for f in ("avx512_vnni", "avx_vnni", "avx2") if f in m["isa"]), "")
    path = m["kernel_path"] or (f"{best} cpu" if best else "")
    threads = f"{m['threads']} thread{'' if m['threads'] == 1 else 's'}" if m["threads"] else ""
    return " · ".join(x for x in (m["cpu_model"], threads, path) if x)


def machine_key(rec: dict) -> str:
    """Two records are the same cell on the same machine when cell id and this key agree."""
    m = machine(rec)
    return "|".join(str(x) for x in (m["cpu_model"], " ".join(m["isa"]), m["threads"], m["kernel_path"]))


def merge(*sources: Iterable[dict]) -> tuple[list[dict], int]:
    """Union of record lists, one per (cell id, machine); of duplicates a clean-tree record wins over
    a dirty one, then the later source. Returns (records, number of duplicates dropped)."""
    chosen: dict[tuple[str, str], tuple[int, dict]] = {}
    dropped = 0
    for order, records in enumerate(sources):
        for rec in records:
            key = (rec.get("cell_id", ""), machine_key(rec))
            rank = (0 if rec.get("git_dirty") else 1, order)
            if key in chosen:
                dropped += 1
                if rank < chosen[key][0]:
                    continue
            chosen[key] = (rank, rec)
    return [rec for _, rec in chosen.values()], dropped


# ------------------------------------------------------------------ reading boards

def read_board(path: Path) -> list[dict]:
    """The valid records of a leaderboard.json (see `load_board`; skipped ones are logged)."""
    records, skipped = load_board(path)
    for skip in skipped:
        log.warning("sparq: warning: %s", skip.line())
    return records


def load_board(path: Path) -> tuple[list[dict], list[Skipped]]:
    """The records of a leaderboard.json (this layout, or v1 upgraded), each validated
    (`suite.report.validate`), and those skipped (board and record index, why). SparqError when
    the file is not a board this reader knows (not JSON, no record list, a newer version)."""
    name = source_name(path).removeprefix("board:")
    try:
        doc = json.loads(Path(path).read_bytes())
    except (ValueError, RecursionError) as e:
        raise SparqError(f"{path}: not valid JSON (truncated?): {str(e).splitlines()[0][:200]}") from None
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise SparqError(f"{path}: not a leaderboard.json (expected an object with a 'records' list)")
    if isinstance(version, bool) or version not in (1, BOARD_VERSION):
        newer = isinstance(version, int) and not isinstance(version, bool) and version > BOARD_VERSION
        shown = version if newer else repr(version)[:40]
        raise SparqError(f"{path}: leaderboard schema_version {shown}"
                         + (" is newer than this reader's; update sparq" if newer else "")
                         + f" (readable: 1, {BOARD_VERSION})")
    if version == BOARD_VERSION:
        return checked(doc["records"], name)
    good, skipped = [], []
    for i, r in enumerate(doc["records"]):
        try:
            good.append(check_record(upgrade_v1(r)))
        except InvalidRecord as e:
            skipped.append(Skipped(f"{name} record {i}", str(e)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            skipped.append(Skipped(f"{name} record {i}", f"not a v1 record ({type(e).__name__}: {str(e)[:200]})"))
    return good, skipped


def source_name(path: Path) -> str:
    """'board:<parent dir>/<file>': names a merged board without the machine's absolute path."""
    path = Path(path)
    return f"board:{path.parent.name}/{path.name}" if path.parent.name else f"board:{path.name}"


_PATTERN = {"dense": "dense", "gmp": "unstructured", "block": "block1x4"}
_V1_GRID = {"methods": None, "mainjob": None}  # v1 experiments that are not a grid of conf/experiment


def _v1_command(r: dict) -> str:
    """v1 records carry no command: the grid they came from (what reproduces them)."""
    paper = r.get("paper", "")
    if paper == "mainjob":
        return "./reproduce.sh"
    if paper in _V1_GRID:
        return f"(not recorded: experiment '{paper}' predates per-cell commands)"
    grid = paper
    if paper == "prune_ofa" and r.get("variant", {}).get("profile.train_samples") == "8000":
        grid = "prune_ofa_transfer"
    return f"./reproduce.sh {grid}" + ("" if r.get("profile") in ("quick", None) else f" profile={r['profile']}")


def upgrade_v1(r: dict) -> dict:
    """A v1 leaderboard record (params-derived, before CellRecord) as CellRecord data."""
    env = dict(r.get("environment") or {})
    sha = str(env.get("git_sha") or "")
    sp, q = r.get("sparsity") or {}, r.get("quant") or {}
    pattern = f"{sp['n']}:{sp['m']}" if sp.get("n") and sp.get("m") else _PATTERN.get(sp.get("method"), "unstructured")
    variant = {k: str(v) for k, v in (r.get("variant") or {}).items()}
    stage = variant.pop("stage", "finetune")
    train = variant.pop("profile.train_samples", None)

    def num(v):
        return v if isinstance(v, (int, float)) and math.isfinite(v) else None

    metrics = {f"eval_{k}": num(v) for k, v in (r.get("eval") or {}).items()}
    metrics.update(eval_primary=num(r.get("eval_primary")), train_seconds=num(r.get("train_seconds")),
                   wall_seconds=num(r.get("wall_seconds")))
    comp = r.get("compression") or {}
    threads = int(env["threads"]) if str(env.get("threads", "")).isdigit() else None
    return {
        "schema_version": 1, "kind": "cell", "cell_id": r["cell_id"], "run_id": r.get("run_id"),
        "experiment": r["experiment"], "status": "FINISHED", "command": _v1_command(r),
        "git_sha": sha.removesuffix("+dirty"), "git_dirty": sha.endswith("+dirty"),
        "axes": {"model": r["model"], "task": r["task"], "profile": r["profile"], "seed": int(r["seed"]),
                 "init": "upstream" if stage == "transfer" else None, "budget": None,
                 "sparsity_method": sp.get("method", "dense"), "sparsity_target": sp.get("target") or 0.0,
                 "sparsity_pattern": pattern, "quant_method": q.get("method", "fp32"),
                 "weight_bits": q.get("weight_bits", 32), "act_bits": q.get("act_bits", 32),
                 "distill_method": r.get("distill", "none"), "variant": variant},
        "metrics": metrics,
        "compression": {"sparsity_measured": num(sp.get("measured")), "compression_nominal": num(comp.get("nominal")),
                        "compression_packed": num(comp.get("packed")),
                        "encoder_bytes_packed": num(comp.get("encoder_bytes_packed")),
                        "encoder_bytes_dense_fp32": num(comp.get("encoder_bytes_dense_fp32"))},
        "latency": {**{f"latency_ms_{k}": num(v) for k, v in (r.get("latency_ms") or {}).items()},
                    "threads": threads},
        "budget": {"train_examples": int(train) if train and train.isdigit() else None},
        "data": {"source": env.get("data_source"), "train_from_dev": env.get("train_from_dev") == "true"},
        "environment": {"cpu_model": env.get("cpu_model"), "cpu_flags": str(env.get("cpu_flags") or "").split(),
                        "threads": threads, "torch": env.get("torch"), "transformers": env.get("transformers"),
                        "python": env.get("python")},
        "tags": {"upgraded_from": "leaderboard.json v1", **({"stage": stage} if stage != "finetune" else {})},
        "config": _v1_config(sp, q),
    }


def _v1_config(sp: dict, q: dict) -> dict:
    """The method sections a v1 record implies (its methods' axes): what their classes label it by."""
    nm = {"n": sp["n"], "m": sp["m"]} if sp.get("n") and sp.get("m") else {"target": sp.get("target") or 0.0}
    return {"sparsity": {"method": sp.get("method", "dense"), **nm},
            "quant": {"method": q.get("method", "fp32"), "weight_bits": q.get("weight_bits", 32),
                      "act_bits": q.get("act_bits", 32)}}


# ------------------------------------------------------------------ host-free check

def host_leaks(text: str, root: Path | None = None) -> list[str]:
    """Absolute paths of this machine, its host name or a file URI in `text` (what must never be
    published): the matches found, empty when clean."""
    import os
    import socket

    from suite.paths import ROOT

    needles = {str(root or ROOT), os.path.expanduser("~"), socket.gethostname()}
    found = [n for n in needles if len(n) > 3 and n not in ("/root", "root") and n in text]
    found += re.findall(r"(?:sqlite:/{4}|file:/{3})[^\s\"']+|(?<![\w.])/(?:home|Users|tmp|work|root|mnt|var)/[^\s\"'<>]+",
                        text)
    return sorted(set(found))
