"""The pruning modifiers on a toy model: gradual schedule, exact per-layer sparsity, locked masks,
zeros after every optimizer step (also under QAT fake-quant), transfer via LockedMaskModifier."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from suite.lifecycle import TrainState
from suite.prune import masks as M
from suite.prune.modifier import LockedMaskModifier, PruningModifier, raw_weight


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.ModuleDict({"a": nn.Linear(16, 24), "b": nn.Linear(24, 16)})
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(torch.relu(self.encoder["b"](torch.relu(self.encoder["a"](x)))))


def cfg(pattern="unstructured", **kw):
    """The typed config of the method with this mask pattern (masks locked at the ramp's end)."""
    from suite.prune.block import BlockConfig
    from suite.prune.gmp import GmpConfig
    from suite.prune.nm import NMConfig

    base = dict(target=0.75, scope="layer", schedule="gradual", start=0.0, end=0.5, lock=None, every=2,
                include=["encoder.*"], exclude=[])
    base.update(kw)
    cls = {"unstructured": GmpConfig, "block": BlockConfig, "nm": NMConfig}[pattern]
    return cls(**base)


def train(model, modifiers, steps=20, lr=0.05):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    state = TrainState(total_steps=steps)
    for m in modifiers:
        m.on_train_start(model, state)
    # re-create after on_train_start, as suite.train does (modifiers may add parameters)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    g = torch.Generator().manual_seed(1)
    while state.step < steps:
        for m in modifiers:
            m.on_step_start(model, state)
        x = torch.randn(8, 16, generator=g)
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        state.step += 1
        for m in modifiers:
            m.on_step_end(model, state)
        history.append(state)
        yield state
    for m in modifiers:
        m.on_train_end(model, state)


@pytest.mark.parametrize("pattern,kw", [("unstructured", {}), ("block", {}), ("nm", {"target": 0.5})])
def test_gradual_pruning_reaches_target_and_locks(pattern, kw):
    model = Toy()
    pm = PruningModifier(cfg(pattern=pattern, **kw))
    shas = []
    for state in train(model, [pm]):
        # pruned weights are exactly zero after every optimizer step
        for name, mask in pm.masks.items():
            assert bool((raw_weight(pm.linears[name])[~mask] == 0).all())
        if state.step >= 10:
            shas.append(M.mask_sha256(pm.masks))
    assert len(set(shas)) == 1  # locked once reached
    target = pm.cfg.target
    for mod in pm.linears.values():
        zeros = int((mod.weight == 0).sum())
        assert abs(zeros - target * mod.weight.numel()) <= (4 if pattern == "block" else 1)
    assert "head" not in pm.linears and float((model.head.weight == 0).float().mean()) == 0.0
    if pattern == "nm":
        for mod in pm.linears.values():
            assert bool(((mod.weight != 0).reshape(mod.out_features, -1, 4).sum(-1) <= 2).all())


def test_oneshot_and_global_scope():
    model = Toy()
    pm = PruningModifier(cfg(schedule="oneshot", scope="global", target=0.9))
    states = train(model, [pm], steps=3)
    next(states)
    assert M.mask_sparsity(pm.masks) == pytest.approx(0.9, abs=1 / 768)
    for _ in states:
        pass


def test_training_stopped_early_still_reaches_target():
    model = Toy()
    pm = PruningModifier(cfg(end=1.0, every=100))
    for _ in train(model, [pm], steps=5):
        pass
    assert M.mask_sparsity(pm.masks) == pytest.approx(0.75, abs=0.01)


def test_locked_masks_transfer_by_name_and_survive_qat():
    from suite.quant.qat import QatConfig, QATModifier

    model = Toy()
    masks = {"encoder.a": M.magnitude_mask(model.encoder["a"].weight, 0.8),
             "encoder.b": M.nm_mask(model.encoder["b"].weight, 2, 4)}
    sha = M.mask_sha256(masks)
    ctx = SimpleNamespace(train_loader=[])
    qat = QATModifier(QatConfig(weight_bits=4, act_bits=8, scale_init="default"), ctx,
                      linears={"encoder.a": model.encoder["a"], "encoder.b": model.encoder["b"]})
    lm = LockedMaskModifier(masks)
    for _ in train(model, [lm, qat]):
        for name, mask in masks.items():
            w = model.get_submodule(name).weight  # effective, fake-quantized
            assert bool((w[~mask] == 0).all())
    assert lm.sha256() == sha
    assert any(p.requires_grad for n, p in model.named_parameters() if n.endswith("lsq_scale"))
