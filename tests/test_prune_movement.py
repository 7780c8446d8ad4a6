"""Movement pruning: the maths on toy tensors (scores accumulate -W * grad, masks hit the target,
the ramp is cubic, pruned weights come back with their value, soft thresholds learned scores
under a regularisation), the config's facts and refusals, and a smoke cell on the tiny model."""

import json

import pytest
import torch
from torch import nn

from suite.config import compose
from suite.errors import ConfigError
from suite.lifecycle import TrainState
from suite.paths import RESULTS_DIR
from suite.prune import masks as M
from suite.prune.modifier import raw_weight
from suite.prune.movement import MovementConfig, MovementModifier, regulariser_gradient


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.ModuleDict({"a": nn.Linear(16, 24), "b": nn.Linear(24, 16)})
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(torch.relu(self.encoder["b"](torch.relu(self.encoder["a"](x)))))


def cfg(**kw):
    base = dict(target=0.75, start=0.0, end=0.5, include=["encoder.*"])
    base.update(kw)
    return MovementConfig(**base)


def steps(model, mod, total=20, lr=0.05, on_grad=None):
    """The loop of suite/train.py, reduced: yields the state after each step's on_step_end."""
    state = TrainState(total_steps=total)
    mod.on_train_start(model, state)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    while state.step < total:
        mod.on_step_start(model, state)
        model(torch.randn(8, 16, generator=g)).pow(2).mean().backward()
        if on_grad:
            on_grad(state)
        mod.after_backward(model, state)
        opt.step()
        opt.zero_grad()
        state.step += 1
        mod.on_step_end(model, state)
        yield state
    mod.on_train_end(model, state)


def test_scores_accumulate_minus_w_times_grad():
    model = Toy()
    mod = MovementModifier(cfg(start=0.5, end=0.5))  # no mask before half-way: W' = W
    expected = {n: torch.zeros_like(m.weight) for n, m in mod_linears(model).items()}

    def record(state):  # before after_backward: the gradient of the unmasked weight
        for n, m in mod_linears(model).items():
            expected[n] -= m.weight.detach() * m.weight.grad

    for state in steps(model, mod, total=20, on_grad=record):
        if state.step == 9:
            for n in expected:
                assert torch.allclose(mod.scores[n], expected[n], atol=1e-7)
            assert M.mask_sparsity(mod.masks) == 0.0


def mod_linears(model):
    return {f"encoder.{k}": v for k, v in model.encoder.items()}


def test_hard_masks_hit_the_target_and_keep_the_top_scores():
    model = Toy()
    mod = MovementModifier(cfg(target=0.8))
    for state in steps(model, mod):
        for n, mask in mod.masks.items():
            assert bool((raw_weight(mod.linears[n])[~mask] == 0).all())  # W' = W * M after every step
        if state.step == 19:
            scores = dict(mod.scores)
    for n, mask in mod.masks.items():
        w = mod.linears[n].weight
        assert int((w == 0).sum()) == round(0.8 * w.numel())  # exact count per layer
        assert scores[n][mask].min() >= scores[n][~mask].max()  # the highest movement scores survive
    assert float((model.head.weight == 0).float().mean()) == 0.0  # the head is not pruned


def test_global_scope_prunes_one_threshold_over_layers():
    model = Toy()
    mod = MovementModifier(cfg(target=0.6, scope="global"))
    for _ in steps(model, mod):
        pass
    assert M.mask_sparsity(mod.masks) == pytest.approx(0.6, abs=1 / (16 * 24 * 2))


def test_the_ramp_is_cubic():
    model = Toy()
    total, t0, t1, target = 40, 4, 28, 0.9  # start 0.1, end 0.7
    mod = MovementModifier(cfg(target=target, start=0.1, end=0.7))
    seen = {}
    for state in steps(model, mod, total=total):
        seen[state.step] = M.mask_sparsity(mod.masks)
    numel = sum(m.weight.numel() for m in model.encoder.values())
    for t, got in seen.items():
        frac = min(1.0, max(0.0, (t - t0) / (t1 - t0)))
        want = target * (1 - (1 - frac) ** 3)
        assert got == pytest.approx(want, abs=2 / numel), t  # per-layer rounding only
    assert seen[t0 - 1] == 0.0 and seen[t1] == pytest.approx(target, abs=2 / numel)


def test_a_pruned_weight_comes_back_with_its_value():
    model = Toy()
    mod = MovementModifier(cfg(target=0.5, start=0.0, end=0.0))  # pruned to 50% from the first step
    run = steps(model, mod, total=10, lr=0.0)  # lr 0: the weights never move, only the scores
    next(run)
    name = "encoder.a"
    w = mod.linears[name].weight
    pruned = (~mod.masks[name]).nonzero()[0].tolist()
    value = mod.dense[name][tuple(pruned)].item()
    assert w[tuple(pruned)].item() == 0.0 and value != 0.0
    mod.scores[name][tuple(pruned)] = 1e9  # its score climbs to the top
    next(run)
    assert mod.masks[name][tuple(pruned)] and w[tuple(pruned)].item() == value
    assert int((w == 0).sum()) == round(0.5 * w.numel())


def test_pruned_weights_get_no_gradient():
    model = Toy()
    mod = MovementModifier(cfg(target=0.5, end=0.0))
    state = TrainState(total_steps=5)
    mod.on_train_start(model, state)
    mod.on_step_end(model, state)  # step 0: masks at the target
    model(torch.randn(4, 16)).sum().backward()
    mod.after_backward(model, state)
    for n, mask in mod.masks.items():
        grad = mod.linears[n].weight.grad
        assert bool((grad[~mask] == 0).all()) and bool((grad[mask] != 0).any())


def test_soft_keeps_scores_above_the_threshold_and_regularisation_prunes_more():
    def sparsity(reg_lambda):
        model = Toy()
        mod = MovementModifier(cfg(variant="soft", target=None, reg_lambda=reg_lambda, score_lr=0.05,
                                   threshold=0.3, end=0.5))
        for _ in steps(model, mod, total=30):
            pass
        for n, mask in mod.masks.items():
            assert torch.equal(mask, mod.linears[n].weight != 0)
        return M.mask_sparsity(mod.masks)

    reached = [sparsity(lam) for lam in (0.0, 0.1, 0.5)]
    assert reached == sorted(reached) and reached[0] < reached[-1] < 1.0  # lambda sets the sparsity


def test_soft_mask_and_regulariser_maths():
    from suite.prune.movement import threshold_masks

    s = {"x": torch.tensor([[-3.0, 0.0, 3.0]])}
    assert threshold_masks(s, 0.5)["x"].tolist() == [[False, False, True]]
    reg = regulariser_gradient({"x": s["x"], "y": torch.zeros(1, 2)})
    sig = torch.sigmoid(s["x"])
    assert torch.allclose(reg["x"], sig * (1 - sig) / (3 * 2))  # mean over 3 weights, 2 layers
    assert torch.allclose(reg["y"], torch.full((1, 2), 0.25 / (2 * 2)))


def test_config_facts_and_refusals():
    hard = compose(["sparsity=movement"]).sparsity
    assert (hard.label(), hard.nominal_density(), hard.packed_format(), hard.pattern_label()) == \
        ("movement 90%", pytest.approx(0.1), "csr", "unstructured")
    soft = compose(["sparsity=movement", "sparsity.variant=soft", "sparsity.target=null"]).sparsity
    assert soft.label() == "soft movement λ400" and soft.nominal_density() == 1.0
    for bad, key in ((["sparsity.variant=medium"], "sparsity.variant"),
                     (["sparsity.variant=soft"], "sparsity.target"),  # soft sets no target
                     (["sparsity.target=1.0"], "sparsity.target"), (["sparsity.start=0.8"], "sparsity.start"),
                     (["sparsity.threshold=0"], "sparsity.threshold"), (["sparsity.every=0"], "sparsity.every")):
        with pytest.raises(ConfigError, match=key):
            compose(["sparsity=movement", *bad])


def test_movement_smoke_cell(run_cell, smoke_overrides, data_dir):
    import jsonschema
    import mlflow

    res = run_cell([*smoke_overrides, "sparsity=movement", "sparsity.target=0.8", f"data_dir={data_dir}"])
    assert res.status == "FINISHED"
    rec = mlflow.artifacts.load_dict(f"runs:/{res.run_id}/result.json")
    jsonschema.validate(rec, json.loads((RESULTS_DIR / "cell_record.schema.json").read_text()))
    axes = rec["axes"]
    assert (axes["sparsity_method"], axes["sparsity_label"], axes["sparsity_target"]) == ("movement", "movement 80%", 0.8)
    assert rec["compression"]["sparsity_measured"] == pytest.approx(0.8, abs=1e-3)
    assert rec["metrics"]["mask_sparsity"] == pytest.approx(0.8, abs=1e-3)
