"""Save/load packed layers: a small binary container with magic, version and sha256.

Layout: MAGIC (8 bytes) | version u16 | header length u32 | header JSON | payload | sha256 (32
bytes over everything before it). The header lists every layer (format, shape, bits, meta) and
every array (dtype, shape, offset, nbytes) in the payload. Any truncated, corrupt or foreign
file raises ``PackedFormatError`` with a one-line message. The checksum only proves integrity,
not sanity, so a re-checksummed forged file is checked too: array dtypes come from the format
(the header must agree), declared sizes are bounded by the payload and the file size, index
arrays are checked against the shape (no negatives, nothing past K), before any kernel runs.
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
        entries = header["layers"]
        if not isinstance(entries, list):
            raise TypeError("layers is not a list")
        for e in entries:
            name = e["name"]
            if not isinstance(name, str) or name in layers:
                raise ValueError(f"bad or repeated layer name {name!r}")
            layers[name] = _build(e, payload, len(data))
    except (KeyError, ValueError, TypeError, IndexError, OverflowError) as exc:
        raise PackedFormatError(f"{where}: corrupt packed file ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())})") from None
    if list(layers) == [""]:
        return layers[""]
    return layers


MAX_DENSE_PER_FILE_BYTE = 1024  # a layer's N*K may be at most this many times the file size


def _int(v, what: str, lo: int = 0, hi: int = 2**62) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{what}={v!r} out of range [{lo}, {hi}]")
    return v


def _build(e: dict, payload: memoryview, file_bytes: int) -> PackedLinear:
    """One layer from its header entry: dtypes come from the format (the header must agree),
    every declared size is checked against the payload before anything is allocated, and the
    arrays against the shape (counts, index ranges) before a kernel can read them."""
    fmt = e["format"]
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    cls = FORMATS[fmt]
    n = _int(e["out_features"], "out_features", 1)
    k = _int(e["in_features"], "in_features", 1)
    if n * k > MAX_DENSE_PER_FILE_BYTE * file_bytes:
        raise ValueError(f"declared shape {n}x{k} is far larger than the file ({file_bytes} B)")
    bits = e["bits"]
    if bits not in (4, 8):
        raise ValueError(f"bits={bits!r}")
    want = dict(cls.stored_dtypes(n, k, bits), scale=np.dtype(np.float32),
                bias=np.dtype(np.float32))
    arrays = e["arrays"]
    missing = set(want) - {"bias"} - set(arrays)
    if missing or set(arrays) - set(want):
        raise ValueError(f"{fmt} stores {sorted(want)}, file has {sorted(arrays)}")
    arrs = {}
    for key, a in arrays.items():
        dt = want[key]
        if np.dtype(a["dtype"]) != dt:
            raise ValueError(f"{key}: dtype {a['dtype']} declared, format {fmt} stores {dt.str}")
        off = _int(a["offset"], f"{key}.offset", 0, len(payload))
        nb = _int(a["nbytes"], f"{key}.nbytes", 0, len(payload) - off)
        shape = a["shape"]
        if (not isinstance(shape, list) or len(shape) != 1
                or _int(shape[0], f"{key}.shape", 0, nb) * dt.itemsize != nb):
            raise ValueError(f"{key}: shape {shape} does not match {nb} bytes of {dt.str}")
        arrs[key] = np.frombuffer(payload[off:off + nb], dtype=dt).copy()
    meta = e.get("meta") or {}
    obj = cls(n, k, bits, arrs.pop("scale"), arrs.pop("bias", None))
    if fmt == "nm":
        obj.n, obj.m = _int(meta.get("n"), "n", 1, 3), _int(meta.get("m"), "m", 4, 4)
    elif meta:
        raise ValueError(f"{fmt} takes no meta, got {sorted(meta)}")
    names = {"blocks": "blocks_idx"}
    for key, arr in arrs.items():
        setattr(obj, names.get(key, key), arr)
    obj.check_arrays()
    return obj
