"""Pure pruning maths: exact masks, patterns, global scope, schedule, mask hashing."""

import pytest
import torch

from suite.prune import masks as M
from suite.prune import schedule as S


def _w(out=24, inp=38, seed=0):
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.97])
@pytest.mark.parametrize("shape", [(24, 38), (7, 13), (1, 5)])
def test_magnitude_mask_exact_and_keeps_largest(sparsity, shape):
    w = _w(*shape)
    mask = M.magnitude_mask(w, sparsity)
    pruned = int((~mask).sum())
    assert abs(pruned - sparsity * w.numel()) <= 1
    if 0 < pruned < w.numel():
        assert w.abs()[mask].min() >= w.abs()[~mask].max()


def test_magnitude_mask_ties_exact_count():
    w = torch.zeros(4, 8)
    assert int((~M.magnitude_mask(w, 0.5)).sum()) == 16


@pytest.mark.parametrize("inp", [16, 38])
def test_block_mask_whole_blocks(inp):
    w = _w(12, inp)
    mask = M.block_mask(w, 0.75, block=4)
    pad = (-inp) % 4
    padded = torch.cat([mask, mask[:, -1:].expand(-1, pad)], 1) if pad else mask
    blocks = padded.reshape(12, -1, 4)
    assert bool((blocks.all(-1) | (~blocks).all(-1)).all())  # each block all kept or all pruned
    n_blocks = blocks.shape[0] * blocks.shape[1]
    assert abs(int((~blocks.all(-1)).sum()) - 0.75 * n_blocks) <= 1


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (3, 8), (1, 2)])
def test_nm_mask_every_group(n, m):
    w = _w(10, 8 * m)
    groups = M.nm_mask(w, n, m).reshape(10, -1, m)
    assert bool((groups.sum(-1) == n).all())
    # the kept ones are the largest of their group
    g = w.abs().reshape(10, -1, m)
    kept_min = torch.where(groups, g, torch.inf).min(-1).values
    pruned_max = torch.where(~groups, g, -torch.inf).max(-1).values
    assert bool((kept_min >= pruned_max).all())


def test_nm_mask_partial_group():
    mask = M.nm_mask(_w(3, 10), 2, 4)
    assert mask.shape == (3, 10)
    assert bool((mask[:, :8].reshape(3, 2, 4).sum(-1) == 2).all())
    assert bool((mask[:, 8:].sum(-1) <= 2).all())


def test_nm_gradual_reaches_pattern():
    w = _w(8, 16)
    final = M.nm_mask(w, 2, 4)
    half = M.nm_gradual_mask(w, 0.25, 2, 4)
    assert int((~half).sum()) == 32
    assert bool((half | ~final).all())  # only final candidates are pruned on the way
    assert torch.equal(M.nm_gradual_mask(w, 0.5, 2, 4), final)


def test_global_masks_exact_total_and_uneven_layers():
    ws = {"a": _w(10, 10, 1) * 0.1, "b": _w(20, 10, 2)}
    masks = M.global_magnitude_masks(ws, 0.6)
    assert sum(int((~m).sum()) for m in masks.values()) == 180
    assert M.mask_sparsity({"a": masks["a"]}) > M.mask_sparsity({"b": masks["b"]})
    ws4 = {"a": _w(10, 12, 1) * 0.1, "b": _w(20, 8, 2)}
    bmasks = M.global_block_masks(ws4, 0.5)
    assert M.mask_sparsity(bmasks) == pytest.approx(0.5)
    assert M.mask_sparsity({"a": bmasks["a"]}) > M.mask_sparsity({"b": bmasks["b"]})


def test_compute_masks_dispatch_and_errors():
    ws = {"x": _w()}
    assert M.compute_masks(ws, 0.5, "nm", n=2, m=4)["x"].shape == ws["x"].shape
    with pytest.raises(ValueError):
        M.compute_masks(ws, 0.5, "bogus")
    with pytest.raises(ValueError):
        M.nm_mask(ws["x"], 4, 4)


def test_score_masks_keep_the_highest_scores_of_every_family():
    """A method's own scores (negative ones too) through the magnitude mask families."""
    scores = {"a": _w(8, 14, 3), "b": _w(6, 16, 4) - 5.0}  # b: every score negative
    un = M.score_masks(scores, 0.75)
    for k, s in scores.items():
        assert int((~un[k]).sum()) == round(0.75 * s.numel())
        assert s[un[k]].min() >= s[~un[k]].max()
    glob = M.score_masks(scores, 0.5, scope="global")
    assert sum(int((~m).sum()) for m in glob.values()) == round(0.5 * (8 * 14 + 6 * 16))
    assert M.mask_sparsity({"b": glob["b"]}) == 1.0  # one threshold: the all-negative layer goes first
    nm = M.score_masks(scores, 0.5, "nm", n=2, m=4)
    # a trailing partial group (14 inputs) keeps its n best real scores, not the padding
    assert bool((nm["a"][:, 12:].sum(-1) == 2).all()) and bool((nm["b"].reshape(6, -1, 4).sum(-1) == 2).all())
    block = M.score_masks({"b": scores["b"]}, 0.5, "block", block=4)["b"].reshape(6, 4, 4)
    sums = scores["b"].reshape(6, 4, 4).sum(-1)
    kept = block.all(-1)
    assert bool((kept | (~block).all(-1)).all())
    assert sums[kept].min() >= sums[~kept].max()  # blocks ranked by the sum of their scores


def test_compute_masks_is_score_masks_of_magnitudes():
    ws = {"x": _w(12, 20, 5), "y": _w(12, 20, 6)}
    mags = {k: w.abs() for k, w in ws.items()}
    for pattern, scope in (("unstructured", "layer"), ("unstructured", "global"), ("nm", "layer")):
        a = M.compute_masks(ws, 0.5, pattern, scope)
        b = M.score_masks(mags, 0.5, pattern, scope)
        assert all(torch.equal(a[k], b[k]) for k in ws)
    assert torch.equal(M.compute_masks(ws, 0.5, "block")["x"], M.block_mask(ws["x"], 0.5))


def test_mask_sha256_stable_and_sensitive():
    masks = {"b": M.magnitude_mask(_w(), 0.5), "a": M.magnitude_mask(_w(seed=1), 0.5)}
    h = M.mask_sha256(masks)
    assert h == M.mask_sha256(dict(reversed(list(masks.items()))))
    flipped = {k: v.clone() for k, v in masks.items()}
    flipped["a"][0, 0] = ~flipped["a"][0, 0]
    assert M.mask_sha256(flipped) != h


def test_cubic_schedule_values():
    total, target = 100, 0.9
    assert S.cubic_sparsity(0, total, target, 0.0, 0.8) == 0.0
    assert S.cubic_sparsity(40, total, target, 0.0, 0.8) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert S.cubic_sparsity(80, total, target, 0.0, 0.8) == pytest.approx(0.9)
    assert S.cubic_sparsity(99, total, target, 0.0, 0.8) == pytest.approx(0.9)
    assert S.cubic_sparsity(5, total, target, 0.1, 0.8) == 0.0
    assert S.cubic_sparsity(10, total, target, 0.1, 0.8) == 0.0
    # monotone non-decreasing
    vals = [S.cubic_sparsity(t, total, target) for t in range(total)]
    assert all(b >= a for a, b in zip(vals, vals[1:], strict=False))


def test_update_steps_and_piecewise_constant():
    steps = [t for t in range(101) if S.is_update_step(t, 100, 0.0, 0.75, 10)]
    assert steps == [0, 10, 20, 30, 40, 50, 60, 70, 75]
    assert S.scheduled_sparsity(15, 100, 0.9, 0.0, 0.75, 10) == S.cubic_sparsity(10, 100, 0.9, 0.0, 0.75)
    assert S.scheduled_sparsity(76, 100, 0.9, 0.0, 0.75, 10) == 0.9
    assert S.linear_anneal(0.5, 0.1) == pytest.approx(0.05)
    assert S.linear_anneal(1.0, 0.1) == 0.0
