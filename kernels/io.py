"""Save/load packed layers: a small binary container with magic, version and sha256.

Layout: MAGIC (8 bytes) | version u16 | header length u32 | header JSON | payload | sha256 (32
bytes over everything before it). The header lists every layer (format, shape, bits, meta) and
every array (dtype, shape, offset, nbytes) in the payload. Any truncated, corrupt or foreign
file raises ``PackedFormatError`` with a one-line message.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np

from .formats import FORMATS, PackedLinear

MAGIC = b"SPARQPK\x00"
VERSION = 1
_PRE = struct.Struct("<8sHI")


class PackedFormatError(ValueError):
    """A packed-weights file is truncated, corrupt, of another version, or not ours."""


def _encode(layers: dict[str, PackedLinear]) -> bytes:
    entries, chunks, offset = [], [], 0
    for name, p in layers.items():
        arrays = {}
        for key, arr in p.arrays().items():
            arr = np.ascontiguousarray(arr)
            arrays[key] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset,
                           "nbytes": arr.nbytes}
            chunks.append(arr.tobytes())
            offset += arr.nbytes
        entries.append({"name": name, "format": p.format, "out_features": p.out_features,
                        "in_features": p.in_features, "bits": p.bits, "meta": p.meta(),
                        "arrays": arrays})
    header = json.dumps({"layers": entries, "payload_bytes": offset}).encode()
    body = _PRE.pack(MAGIC, VERSION, len(header)) + header + b"".join(chunks)
    return body + hashlib.sha256(body).digest()


def save(path: str | os.PathLike, packed: PackedLinear | dict[str, PackedLinear]) -> int:
    """Write one packed layer or a {name: layer} dict; returns the file size in bytes."""
    layers = {"": packed} if isinstance(packed, PackedLinear) else dict(packed)
    data = _encode(layers)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return len(data)


def load(path: str | os.PathLike) -> PackedLinear | dict[str, PackedLinear]:
    """Read what ``save`` wrote (a single layer, or a dict of layers)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise PackedFormatError(f"{path}: cannot read packed file ({e.strerror})") from None
    return _decode(data, str(path))


def _decode(data: bytes, where: str):
    if len(data) < _PRE.size + 32:
        raise PackedFormatError(f"{where}: truncated packed file ({len(data)} bytes)")
    magic, version, hlen = _PRE.unpack_from(data)
    if magic != MAGIC:
        raise PackedFormatError(f"{where}: not a sparq packed file (bad magic {magic!r})")
    if version != VERSION:
        raise PackedFormatError(f"{where}: packed file version {version}, this code reads "
                                f"version {VERSION}")
    end = _PRE.size + hlen
    if len(data) < end + 32:
        raise PackedFormatError(f"{where}: truncated packed file (header cut off)")
    try:
        header = json.loads(data[_PRE.size:end])
        payload_bytes = int(header["payload_bytes"])
    except (ValueError, KeyError, TypeError):
        raise PackedFormatError(f"{where}: corrupt packed file (unreadable header)") from None
    expected = end + payload_bytes + 32
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "oversized"
        raise PackedFormatError(f"{where}: {kind} packed file (expected {expected} bytes, got "
                                f"{len(data)})")
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise PackedFormatError(f"{where}: corrupt packed file (sha256 checksum mismatch)")
    payload = memoryview(data)[end:end + payload_bytes]
    layers = {}
    try:
        for e in header["layers"]:
            cls = FORMATS[e["format"]]
            arrs = {}
            for key, a in e["arrays"].items():
                buf = payload[a["offset"]:a["offset"] + a["nbytes"]]
                arrs[key] = np.frombuffer(buf, dtype=np.dtype(a["dtype"])).reshape(a["shape"]).copy()
            layers[e["name"]] = _build(cls, e, arrs)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise PackedFormatError(f"{where}: corrupt packed file ({type(exc).__name__}: {exc})") from None
    if list(layers) == [""]:
        return layers[""]
    return layers


def _build(cls, e, arrs) -> PackedLinear:
    obj = cls(int(e["out_features"]), int(e["in_features"]), int(e["bits"]), arrs.pop("scale"),
              arrs.pop("bias", None))
    for key, val in (e.get("meta") or {}).items():
        setattr(obj, key, val)
    names = {"blocks": "blocks_idx"}
    for key, arr in arrs.items():
        setattr(obj, names.get(key, key), arr)
    obj.int_weight()  # validates shapes / counts
    return obj
