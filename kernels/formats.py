"""Packed int8/int4 weight formats for y = x @ W.T + b.

Every format stores integer weights with a per-output-channel float32 scale (W ~= q * scale[:,
None]) and an optional float32 bias. ``nbytes`` is the exact packed size (values + indices +
scales + bias); it is what the suite logs as ``encoder_bytes_packed``.

* ``dense``    - int8 values [N, K] (reference).
* ``csr``      - unstructured: row pointers, uint16 column indices (int32 when K > 65536), values.
* ``block1x4`` - 1x4 blocks along K: row pointers, uint16 block (K/4) indices, 4 values a block.
* ``nm``       - N:M along K with M=4 (2:4 by default): exactly n values per group of 4 and 2-bit
                 in-group indices packed 4 per byte.

``bits=4`` packs values two per byte (low nibble first) in any format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .quant import (
    pack_2bit,
    pack_nibbles,
    qmax_for,
    quantize_weight,
    unpack_2bit,
    unpack_nibbles,
)

__all__ = ["FORMATS", "Block1x4Int8", "CSRInt8", "DenseInt8", "NMInt8", "PackedLinear",
           "blocks_from_int", "pack", "pack_2bit", "pack_nibbles", "packed_bytes", "qmax_for",
           "quantize_weight", "register", "unpack_2bit", "unpack_nibbles"]

FORMATS: dict[str, type[PackedLinear]] = {}


def register(cls):
    FORMATS[cls.format] = cls
    return cls


# ----------------------------------------------------------------------------- base class
@dataclass(eq=False)
class PackedLinear:
    """Base of all packed formats. Subclasses define ``format``, their index arrays and
    ``int_weight()``; ``arrays()`` lists exactly what is stored (and counted in ``nbytes``)."""

    format: ClassVar[str] = ""
    out_features: int
    in_features: int
    bits: int
    scale: np.ndarray
    bias: np.ndarray | None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # --- to be provided by subclasses
    def index_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def int_weight(self) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def from_int(cls, q: np.ndarray, scale, bias=None, bits: int = 8, **kw) -> PackedLinear:
        raise NotImplementedError

    @classmethod
    def stored_dtypes(cls, n: int, k: int, bits: int) -> dict[str, np.dtype]:
        """dtype of every array the format stores (what a file must hold; the file's header
        does not choose it)."""
        raise NotImplementedError

    def check_arrays(self) -> None:
        """ValueError unless the stored arrays are consistent with the shape (counts, index
        ranges, scales): what a loaded file is checked with before any kernel reads it."""
        n = self.out_features
        _expect_len("scale", self.scale, n)
        if not (np.all(np.isfinite(self.scale)) and np.all(self.scale > 0)):
            raise ValueError("scale: weight scales must be positive and finite")
        if self.bias is not None:
            _expect_len("bias", self.bias, n)
            if not np.all(np.isfinite(self.bias)):
                raise ValueError("bias: not finite")

    # --- shared
    def meta(self) -> dict:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        a = dict(self.index_arrays())
        a["scale"] = self.scale
        if self.bias is not None:
            a["bias"] = self.bias
        return a

    @property
    def nbytes(self) -> int:
        return int(sum(v.nbytes for v in self.arrays().values()))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    def dequantize(self) -> np.ndarray:
        return self.int_weight().astype(np.float32) * self.scale[:, None]

    @property
    def sparsity(self) -> float:
        q = self.int_weight()
        return float((q == 0).mean()) if q.size else 0.0

    def _values_store(self, vals: np.ndarray) -> np.ndarray:
        vals = np.ascontiguousarray(vals, dtype=np.int8).ravel()
        return pack_nibbles(vals) if self.bits == 4 else vals

    def _values_load(self, stored: np.ndarray, count: int) -> np.ndarray:
        if self.bits == 4:
            return unpack_nibbles(stored, count)
        return np.asarray(stored, dtype=np.int8)[:count]

    def blocks(self):
        """Execution form shared by all VNNI kernels (cached): 1x4 blocks along K.

        Returns (ptr int32 [N+1], cols int32 [nb] (group index k//4), vals int32 [nb] (the 4 int8
        weights of the block, little-endian), comp int32 [N] = 128 * sum(q_row)).
        """
        if "blocks" not in self._cache:
            self._cache["blocks"] = blocks_from_int(self.int_weight())
        return self._cache["blocks"]


def blocks_from_int(q: np.ndarray):
    n, k = q.shape
    g = (k + 3) // 4
    qp = np.zeros((n, g * 4), dtype=np.int8)
    qp[:, :k] = q
    q4 = qp.reshape(n, g, 4)
    mask = (q4 != 0).any(axis=2)
    counts = mask.sum(axis=1)
    ptr = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=ptr[1:])
    rows, cols = np.nonzero(mask)
    vals = np.ascontiguousarray(q4[rows, cols]).view(np.int32).ravel()
    comp = (q.astype(np.int64).sum(axis=1) * 128).astype(np.int32)
    return ptr, cols.astype(np.int32), np.ascontiguousarray(vals), comp


def _index_dtype(limit: int):
    return np.uint16 if limit <= 65536 else np.int32


def _value_dtype(bits: int) -> np.dtype:
    return np.dtype(np.uint8 if bits == 4 else np.int8)


def _value_len(count: int, bits: int) -> int:
    return (count + 1) // 2 if bits == 4 else count


def _expect_len(name: str, arr: np.ndarray, count: int) -> None:
    if arr.ndim != 1 or arr.size != count:
        raise ValueError(f"{name}: {arr.size} entries, the shape needs {count}")


def _check_csr(ptr_name, ptr, idx_name, idx, n: int, limit: int) -> int:
    """Row pointers [0 .. nnz] non-decreasing, indices in [0, limit); returns nnz."""
    _expect_len(ptr_name, ptr, n + 1)
    p = ptr.astype(np.int64)
    if p[0] != 0 or np.any(np.diff(p) < 0):
        raise ValueError(f"{ptr_name}: row pointers must start at 0 and not decrease")
    nnz = int(p[-1])
    _expect_len(idx_name, idx, nnz)
    if nnz and (int(idx.min()) < 0 or int(idx.max()) >= limit):
        raise ValueError(f"{idx_name}: index out of range [0, {limit})")
    return nnz


# ----------------------------------------------------------------------------- formats
@register
@dataclass(eq=False)
class DenseInt8(PackedLinear):
    format: ClassVar[str] = "dense"
    values: np.ndarray = None

    @classmethod
    def from_int(cls, q, scale, bias=None, bits=8, **kw):
        n, k = q.shape
        obj = cls(n, k, bits, _f32(scale), _f32o(bias))
        obj.values = obj._values_store(q)
        return obj

    def index_arrays(self):
        return {"values": self.values}

    @classmethod
    def stored_dtypes(cls, n, k, bits):
        return {"values": _value_dtype(bits)}

    def check_arrays(self):
        super().check_arrays()
        _expect_len("values", self.values, _value_len(self.out_features * self.in_features,
                                                      self.bits))

    def int_weight(self):
        n, k = self.shape
        return self._values_load(self.values, n * k).reshape(n, k)


@register
@dataclass(eq=False)
class CSRInt8(PackedLinear):
    format: ClassVar[str] = "csr"
    indptr: np.ndarray = None
    indices: np.ndarray = None
    values: np.ndarray = None

    @classmethod
    def from_int(cls, q, scale, bias=None, bits=8, **kw):
        n, k = q.shape
        rows, cols = np.nonzero(q)
        indptr = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        obj = cls(n, k, bits, _f32(scale), _f32o(bias))
        obj.indptr, obj.indices = indptr, cols.astype(_index_dtype(k))
        obj.values = obj._values_store(q[rows, cols])
        return obj

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def index_arrays(self):
        return {"indptr": self.indptr, "indices": self.indices, "values": self.values}

    @classmethod
    def stored_dtypes(cls, n, k, bits):
        return {"indptr": np.dtype(np.int32), "indices": np.dtype(_index_dtype(k)),
                "values": _value_dtype(bits)}

    def check_arrays(self):
        super().check_arrays()
        nnz = _check_csr("indptr", self.indptr, "indices", self.indices, self.out_features,
                         self.in_features)
        _expect_len("values", self.values, _value_len(nnz, self.bits))

    def int_weight(self):
        n, k = self.shape
        q = np.zeros((n, k), dtype=np.int8)
        rows = np.repeat(np.arange(n), np.diff(self.indptr))
        q[rows, self.indices.astype(np.int64)] = self._values_load(self.values, self.nnz)
        return q


@register
@dataclass(eq=False)
class Block1x4Int8(PackedLinear):
    format: ClassVar[str] = "block1x4"
    indptr: np.ndarray = None
    blocks_idx: np.ndarray = None
    values: np.ndarray = None

    @classmethod
    def from_int(cls, q, scale, bias=None, bits=8, **kw):
        n, k = q.shape
        ptr, cols, vals, _ = blocks_from_int(q)
        obj = cls(n, k, bits, _f32(scale), _f32o(bias))
        obj.indptr, obj.blocks_idx = ptr, cols.astype(_index_dtype((k + 3) // 4))
        obj.values = obj._values_store(vals.view(np.int8))
        return obj

    @property
    def nblocks(self) -> int:
        return int(self.indptr[-1])

    def index_arrays(self):
        return {"indptr": self.indptr, "blocks": self.blocks_idx, "values": self.values}

    @classmethod
    def stored_dtypes(cls, n, k, bits):
        return {"indptr": np.dtype(np.int32), "blocks": np.dtype(_index_dtype((k + 3) // 4)),
                "values": _value_dtype(bits)}

    def check_arrays(self):
        super().check_arrays()
        nb = _check_csr("indptr", self.indptr, "blocks", self.blocks_idx, self.out_features,
                        (self.in_features + 3) // 4)
        _expect_len("values", self.values, _value_len(4 * nb, self.bits))

    def int_weight(self):
        n, k = self.shape
        g = (k + 3) // 4
        q = np.zeros((n, g, 4), dtype=np.int8)
        rows = np.repeat(np.arange(n), np.diff(self.indptr))
        vals = self._values_load(self.values, self.nblocks * 4).reshape(-1, 4)
        q[rows, self.blocks_idx.astype(np.int64)] = vals
        return np.ascontiguousarray(q.reshape(n, g * 4)[:, :k])


@register
@dataclass(eq=False)
class NMInt8(PackedLinear):
    """N:4 structured sparsity along K (2:4 by default). The last, partial group of a row whose
    K is not a multiple of 4 is treated as zero-padded."""

    format: ClassVar[str] = "nm"
    n: int = 2
    m: int = 4
    values: np.ndarray = None
    idx: np.ndarray = None

    @classmethod
    def from_int(cls, q, scale, bias=None, bits=8, n=2, m=4, **kw):
        if m != 4 or not 1 <= n <= 3:
            raise ValueError(f"nm format: n:m={n}:{m}; supported m=4 with n in 1..3")
        rows, k = q.shape
        g = (k + 3) // 4
        qp = np.zeros((rows, g * 4), dtype=np.int8)
        qp[:, :k] = q
        q4 = qp.reshape(rows, g, 4)
        nz = (q4 != 0).sum(axis=2)
        if np.any(nz > n):
            r, c = np.argwhere(nz > n)[0]
            raise ValueError(f"weight is not {n}:{m} sparse (row {r}, group {c} has {nz[r, c]} "
                             f"nonzeros); prune it to {n}:{m} first")
        # stable order: nonzeros first (by position), then fill with zero positions
        key = np.where(q4 != 0, 0, 1) * 4 + np.arange(4)
        order = np.argsort(key, axis=2, kind="stable")[:, :, :n]
        order = np.sort(order, axis=2)
        vals = np.take_along_axis(q4, order, axis=2)
        obj = cls(rows, k, bits, _f32(scale), _f32o(bias))
        obj.n, obj.m = n, m
        obj.values = obj._values_store(vals)
        obj.idx = pack_2bit(order.astype(np.uint8))
        return obj

    def meta(self):
        return {"n": self.n, "m": self.m}

    def index_arrays(self):
        return {"values": self.values, "idx": self.idx}

    @classmethod
    def stored_dtypes(cls, n, k, bits):
        return {"values": _value_dtype(bits), "idx": np.dtype(np.uint8)}

    def check_arrays(self):
        super().check_arrays()
        if self.m != 4 or not 1 <= self.n <= 3:
            raise ValueError(f"nm: n:m={self.n}:{self.m}; supported m=4 with n in 1..3")
        cnt = self.out_features * ((self.in_features + 3) // 4) * self.n
        _expect_len("values", self.values, _value_len(cnt, self.bits))
        _expect_len("idx", self.idx, (cnt + 3) // 4)
        if self.n > 1 and cnt:  # in-group positions strictly increasing (no duplicates)
            pos = unpack_2bit(self.idx, cnt).reshape(-1, self.n)
            if np.any(np.diff(pos.astype(np.int8), axis=1) <= 0):
                raise ValueError("idx: in-group positions must be distinct and increasing")

    def int_weight(self):
        rows, k = self.shape
        g = (k + 3) // 4
        cnt = rows * g * self.n
        vals = self._values_load(self.values, cnt).reshape(rows, g, self.n)
        idx = unpack_2bit(self.idx, cnt).reshape(rows, g, self.n).astype(np.int64)
        q4 = np.zeros((rows, g, 4), dtype=np.int8)
        np.put_along_axis(q4, idx, vals, axis=2)
        return np.ascontiguousarray(q4.reshape(rows, g * 4)[:, :k])


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32).ravel())


def _f32o(a):
    return None if a is None else _f32(a)


def pack(weight: np.ndarray, format: str = "csr", bias=None, bits: int = 8, scale=None,
         **kw) -> PackedLinear:
    """Quantize a float weight [N, K] (per-output-channel) and pack it in ``format``."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r}: choose one of {sorted(FORMATS)}")
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D [out, in], got shape {w.shape}")
    q, s = quantize_weight(w, bits=bits, scale=scale)
    return FORMATS[format].from_int(q, s, bias, bits=bits, **kw)


def packed_bytes(packed: PackedLinear) -> int:
    """Exact packed byte count: values + indices + scales + bias."""
    return packed.nbytes
