import numpy as np


def sparse_weight(rng, n, k, sparsity, pattern="unstructured"):
    w = rng.standard_normal((n, k)).astype(np.float32)
    if pattern == "unstructured":
        w[rng.random((n, k)) < sparsity] = 0
    elif pattern == "block1x4":
        g = (k + 3) // 4
        keep = np.repeat(rng.random((n, g)) >= sparsity, 4, axis=1)[:, :k]
        w[~keep] = 0
    elif pattern == "nm":
        w = to_nm(w)
    return w


def to_nm(w, n=2):
    rows, k = w.shape
    g = (k + 3) // 4
    p = np.zeros((rows, g * 4), np.float32)
    p[:, :k] = w
    p4 = p.reshape(rows, g, 4)
    drop = np.argsort(np.abs(p4), axis=2)[:, :, : 4 - n]
    np.put_along_axis(p4, drop, 0, axis=2)
    return np.ascontiguousarray(p4.reshape(rows, g * 4)[:, :k])
