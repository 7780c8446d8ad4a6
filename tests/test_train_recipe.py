"""Recipe pieces of the training loop (issue 13): rewind lr schedule, zero gradients of pruned
weights, QAT as a second phase on locked masks, LSQ scale lr, length-grouped indexed batches."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from suite.config import ProfileConfig, TrainConfig
from suite.lifecycle import Modifier, TrainState
from suite.prune import masks as M
from suite.prune.modifier import PruningModifier, raw_weight
from suite.train import fine_tune, lr_factor, make_optimizer, train_loader


class Toy(nn.Module):
    """Encoder-named Linears (so the default prunable patterns match) and an HF-like output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([nn.Linear(16, 32), nn.Linear(32, 16)])
        self.head = nn.Linear(16, 2)

    def forward(self, x, labels=None):
        h = torch.nn.functional.gelu(self.encoder.layer[0](x))
        logits = self.head(self.encoder.layer[1](h))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SimpleNamespace(loss=loss, logits=logits)


def batches(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(8, 16, generator=g), "labels": torch.randint(0, 2, (8,), generator=g)}
            for _ in range(n)]


def prune_cfg(**kw):
    from suite.prune.gmp import GmpConfig

    base = dict(target=0.75, scope="layer", schedule="gradual", start=0.0, end=0.5, lock=0.8, every=1,
                every_fraction=None, include=["encoder.*"], exclude=[])
    base.update(kw)
    return GmpConfig(**base)


def test_lr_factor_rewind_holds_during_ramp():
    total, warmup, hold = 100, 10, 50
    assert lr_factor(5, total, warmup, hold) == pytest.approx(0.5)
    assert all(lr_factor(s, total, warmup, hold) == 1.0 for s in range(10, 50))
    assert lr_factor(75, total, warmup, hold) == pytest.approx(0.5)
    assert lr_factor(100, total, warmup, hold) == 0.0
    # linear (no hold) decays right after warm-up
    assert lr_factor(30, total, warmup) < 1.0


def test_rewind_holds_the_lr_while_pruning_ramps():
    model = Toy()
    pm = PruningModifier(prune_cfg(), warmup_ratio=0.1)
    steps = 40
    pm.on_train_start(model, TrainState(total_steps=steps))
    hold = pm.lr_hold_until(steps)
    assert hold == 20  # ramp ends at 50% of the steps
    lrs = {}
    for schedule in ("rewind", "linear"):
        train = TrainConfig(lr=1e-3, warmup_ratio=0.1, lr_schedule=schedule)
        opt, sched = make_optimizer(model, train, steps, hold_until=hold)
        seen = []
        for _ in range(steps):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        lrs[schedule] = seen
    assert lrs["rewind"][4:hold] == [pytest.approx(1e-3)] * (hold - 4)  # held at the peak during the ramp
    assert lrs["rewind"][hold + 1] < 1e-3 and lrs["rewind"][-1] < lrs["rewind"][hold + 1]
    assert lrs["linear"][hold - 1] < 1e-3  # linear had already decayed


def test_pruned_weights_get_zero_gradient_before_clipping():
    model = Toy()
    pm = PruningModifier(prune_cfg(schedule="oneshot"))
    pm.on_train_start(model, TrainState(total_steps=10))
    b = batches(1)[0]
    model(**b).loss.backward()
    for name, mask in pm.masks.items():
        grad = raw_weight(pm.linears[name]).grad
        assert bool((grad[~mask] == 0).all())
        assert bool((grad[mask] != 0).any())
    pm.on_train_end(model, TrainState(total_steps=10))


class Probe(Modifier):
    """Second-phase modifier that records the zero pattern of the prunable weights."""

    phase = "after_lock"

    def __init__(self):
        self.start = self.end = None
        self.steps = 0

    def phase_steps(self, first):
        return first

    def _zeros(self, model):
        return M.mask_sha256({n: raw_weight(m) != 0 for n, m in model.encoder.layer.named_children()})

    def on_train_start(self, model, state):
        self.start, self.total = self._zeros(model), state.total_steps

    def on_step_end(self, model, state):
        self.steps += 1

    def on_train_end(self, model, state):
        self.end = self._zeros(model)


class GradProbe(Modifier):
    """Sees each step's gradients between backward and the optimizer step."""

    def __init__(self):
        self.seen = []

    def on_step_start(self, model, state):
        self.before = model.head.weight.detach().clone()

    def after_backward(self, model, state):
        grad = model.head.weight.grad
        self.seen.append((state.step, grad is not None and bool(grad.abs().sum() > 0),
                          torch.equal(model.head.weight.detach(), self.before)))


def test_after_backward_sees_gradients_before_the_optimizer_step():
    probe = GradProbe()
    stats = fine_tune(Toy(), batches(6), TrainConfig(lr=1e-2), ProfileConfig(name="t", epochs=1.0), [probe],
                      progress=False)
    assert stats["train_steps"] == 6
    assert probe.seen == [(s, True, True) for s in range(6)]  # gradients there, weights not yet stepped


def test_modifier_declares_what_the_loop_reads():
    m = Modifier()
    assert (m.phase, m.carry, m.scale_lr_ratio, m.lr_hold_until(100), m.phase_steps(100), m.tags()) == \
        (None, False, 1.0, None, None, {})


def test_qat_starts_with_masks_locked_and_keeps_them():
    from suite.quant.qat import QatConfig, QATModifier

    model = Toy()
    data = batches(10)
    pm = PruningModifier(prune_cfg(every=2), warmup_ratio=0.1)
    ctx = SimpleNamespace(train_loader=data, cfg=None)
    qat = QATModifier(QatConfig(weight_bits=4, act_bits=8, calib_batches=2), ctx, phase="after_lock")
    probe = Probe()
    profile = ProfileConfig(name="t", epochs=1.0)
    stats = fine_tune(model, data, TrainConfig(lr=1e-2, lr_schedule="rewind"), profile, [pm, qat, probe],
                      progress=False)
    assert stats["train_steps_phase1"] == 10 and stats["train_steps_phase2"] == 10
    locked = M.mask_sha256({n.split(".")[-1]: m for n, m in pm.masks.items()})
    assert probe.start == locked  # QAT began on the locked pattern
    assert probe.end == locked  # ... and kept it
    for name, mask in pm.masks.items():
        assert bool((raw_weight(pm.linears[name])[~mask] == 0).all())
    from suite.quant.fakequant import weight_fake_quant

    assert all(weight_fake_quant(m) is not None for m in pm.linears.values())  # QAT attached in phase 2


def test_lsq_scales_get_their_own_lr():
    from suite.quant import fakequant as F

    model = Toy()
    linears = {f"encoder.layer.{i}": m for i, m in enumerate(model.encoder.layer)}
    F.attach(linears, {n: torch.full((m.out_features, 1), 0.01) for n, m in linears.items()},
             {n: 4.0 for n in linears}, 8, 8, learn=True)
    opt, _ = make_optimizer(model, TrainConfig(lr=1e-3), 10, scale_lr_ratio=0.1)
    scales = {id(p) for n, p in model.named_parameters() if n.endswith("lsq_scale")}
    assert len(scales) == 4  # 2 weight + 2 activation scales
    by_lr = {g["initial_lr"]: {id(p) for p in g["params"]} for g in opt.param_groups if g["params"]}
    assert by_lr[min(by_lr)] == scales
    assert min(by_lr) == pytest.approx(1e-4) and max(by_lr) == pytest.approx(1e-3)


def test_length_grouped_indexed_loader():
    feats = [{"input_ids": list(range(n))} for n in (3, 40, 5, 38, 4, 39, 6, 41)]

    def collate(items):
        return {"n": torch.tensor([len(i["input_ids"]) for i in items])}

    loader = train_loader(feats, collate, 2, seed=0, group_by_length=True, index=True)
    seen = []
    for b in loader:
        assert [len(feats[i]["input_ids"]) for i in b["example_idx"].tolist()] == b["n"].tolist()
        seen += b["example_idx"].tolist()
    assert sorted(seen) == list(range(8))
