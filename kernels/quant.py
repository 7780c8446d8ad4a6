"""Integer weight codes: symmetric per-output-channel quantization and sub-byte packing (4-bit
values two per byte, 2-bit in-group indices four per byte) used by the packed formats."""

from __future__ import annotations

import numpy as np


# ----------------------------------------------------------------------------- value packing
def pack_nibbles(q: np.ndarray) -> np.ndarray:
    """int8 values in [-8, 7] -> uint8, two per byte, low nibble first."""
    q = np.asarray(q, dtype=np.int8).ravel()
    if q.size and (q.min() < -8 or q.max() > 7):
        raise ValueError("4-bit packing needs values in [-8, 7]")
    u = (q.astype(np.uint8) & 0x0F)
    if u.size % 2:
        u = np.concatenate([u, np.zeros(1, np.uint8)])
    return (u[0::2] | (u[1::2] << 4)).astype(np.uint8)


def unpack_nibbles(p: np.ndarray, count: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.uint8)
    out = np.empty(p.size * 2, dtype=np.uint8)
    out[0::2] = p & 0x0F
    out[1::2] = p >> 4
    out = out[:count].astype(np.int8)
    out[out > 7] -= 16
    return out


def pack_2bit(idx: np.ndarray) -> np.ndarray:
    """Values in [0, 3] -> uint8, four per byte, lowest bits first."""
    i = np.asarray(idx, dtype=np.uint8).ravel()
    pad = (-i.size) % 4
    if pad:
        i = np.concatenate([i, np.zeros(pad, np.uint8)])
    i = i.reshape(-1, 4)
    return (i[:, 0] | (i[:, 1] << 2) | (i[:, 2] << 4) | (i[:, 3] << 6)).astype(np.uint8)


def unpack_2bit(p: np.ndarray, count: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.uint8)
    out = np.stack([p & 3, (p >> 2) & 3, (p >> 4) & 3, (p >> 6) & 3], axis=1).ravel()
    return out[:count].astype(np.uint8)


# ----------------------------------------------------------------------------- quantization
def qmax_for(bits: int) -> int:
    if bits not in (4, 8):
        raise ValueError(f"bits={bits!r}: supported values are 4 and 8")
    return 127 if bits == 8 else 7


def quantize_weight(w: np.ndarray, bits: int = 8, scale: np.ndarray | None = None):
    """Symmetric per-output-channel quantization. Returns (q int8 [N, K], scale float32 [N]).

    Without ``scale``: scale = max|w_row| / qmax (1.0 for all-zero rows). With a given scale
    (e.g. from a QAT fake-quant observer) values are clamped to [-qmax-1, qmax]. Zeros stay zeros.
    """
    w = np.asarray(w, dtype=np.float64)
    qm = qmax_for(bits)
    if scale is None:
        amax = np.abs(w).max(axis=1) if w.size else np.zeros(w.shape[0])
        scale = np.where(amax > 0, amax / qm, 1.0)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64).ravel(), (w.shape[0],))
    if np.any(scale <= 0) or not np.all(np.isfinite(scale)):
        raise ValueError("weight scales must be positive and finite")
    q = np.clip(np.rint(w / scale[:, None]), -qm - 1, qm).astype(np.int8)
    return q, scale.astype(np.float32)
