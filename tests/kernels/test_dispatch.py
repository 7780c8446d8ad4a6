"""Autotuned dispatch (``kernels.dispatch``) on two fake kernel paths whose cost is set here and
paid on an injected clock: deterministic, no real kernel is timed."""

import json

import numpy as np
import pytest

import kernels
from kernels import cpu, dispatch, ops

# seconds per call: fake_a wins at M = 1 except on the 1024x256 layer; fake_b wins at larger M
# except on the 256x1024 layer (N x K as the packed layer: out x in)
SHAPES = [(256, 256), (1024, 256), (256, 1024)]
EXPECTED = {  # (N, K) -> {M: the faster fake}
    (256, 256): {1: "fake_a", 5: "fake_b", 40: "fake_b", 128: "fake_b", 700: "fake_b"},
    (1024, 256): {1: "fake_b", 5: "fake_b", 40: "fake_b", 128: "fake_b", 700: "fake_b"},
    (256, 1024): {1: "fake_a", 5: "fake_a", 40: "fake_a", 128: "fake_a", 700: "fake_a"},
}
MARK = {"fake_a": 1.0, "fake_b": 2.0}  # what each fake kernel writes into y


def cost(name, n, k, m):
    if (n, k) == (1024, 256):
        return {"fake_a": 3e-6, "fake_b": 1e-6}[name] * m
    if (n, k) == (256, 1024):
        return {"fake_a": 1e-6, "fake_b": 5e-6}[name] * m
    if m == 1:
        return {"fake_a": 1e-6, "fake_b": 2e-6}[name]
    return {"fake_a": 4e-6, "fake_b": 2e-6}[name] * m


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Quiet:
    def share(self):
        return 0.0


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    clock = Clock()

    def build(name):
        def runner(p, small, act_scale, act_qmax, act=0):
            def run(x, y):
                clock.t += cost(name, p.out_features, p.in_features, x.shape[0])
                y[:] = MARK[name]
            return run
        return runner

    real = cpu.path_supported
    monkeypatch.setattr(cpu, "PATHS", cpu.PATHS + ("fake_a", "fake_b"))
    monkeypatch.setattr(cpu, "path_supported", lambda p: p in MARK or real(p))
    monkeypatch.setattr(cpu, "_PATH_MEMO", {})
    for name in MARK:
        monkeypatch.setitem(ops._RUNNERS, name, build(name))
    monkeypatch.setattr(dispatch, "tunable_paths", lambda: list(MARK))
    monkeypatch.setattr(dispatch, "CLOCK", clock)
    monkeypatch.setattr(dispatch, "LOAD", Quiet)
    monkeypatch.setattr(dispatch, "_MEMO", {})
    monkeypatch.setenv("SPARQ_CACHE_DIR", str(tmp_path))
    for var in ("SPARQ_KERNEL_ISA", "SPARQ_KERNELS_PORTABLE", "SPARQ_KERNEL_AUTOTUNE"):
        monkeypatch.delenv(var, raising=False)
    return clock


def _layer(n, k):
    w = np.zeros((n, k), np.float32)
    w[:, ::7] = 1.0
    return kernels.pack(w, "csr")


def _run(p, m):
    x = np.ones((m, p.in_features), np.float32)
    y = ops.runner(p, m)
    out = np.empty((m, p.out_features), np.float32)
    y(x, out)
    return out


def test_dispatch_picks_the_faster_fake_kernel_per_shape_and_m(fakes):
    for n, k in SHAPES:
        p = _layer(n, k)
        for m, want in EXPECTED[(n, k)].items():
            out = _run(p, m)
            assert ops.chosen_path(p, m) == want, (n, k, m)
            assert (out == MARK[want]).all()  # the chosen runner is the one that ran
    choices = json.loads(dispatch.cache_file().read_text())["choices"]
    assert len(choices) == sum(len(v) for v in EXPECTED.values())
    assert all(set(c["us"]) == set(MARK) for c in choices.values())


def test_choice_is_reused_from_the_cache_file_without_timing(fakes, monkeypatch):
    p = _layer(256, 256)
    assert ops.chosen_path(p, 1) is None
    _run(p, 1)
    monkeypatch.setattr(dispatch, "_MEMO", {})  # a new process: only the file is left
    q = _layer(256, 256)
    t0 = fakes.t
    out = _run(q, 1)
    assert fakes.t - t0 == pytest.approx(cost("fake_a", 256, 256, 1))  # one call, no timing
    assert ops.chosen_path(q, 1) == "fake_a" and (out == MARK["fake_a"]).all()


def test_a_choice_timed_on_a_busy_machine_is_timed_again(fakes, monkeypatch):
    p = _layer(256, 256)
    key = dispatch.layer_key(p, 1)
    path = dispatch.cache_file()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"choices": {key: {"path": "fake_b", "others_busy": 0.9}}}))
    _run(p, 1)
    assert ops.chosen_path(p, 1) == "fake_a"
    assert json.loads(path.read_text())["choices"][key]["others_busy"] == 0.0


def test_forced_path_overrides_the_autotuned_choice(fakes, monkeypatch):
    p = _layer(256, 256)
    assert (_run(p, 1) == MARK["fake_a"]).all()  # tuned: fake_a at M = 1
    monkeypatch.setenv("SPARQ_KERNEL_ISA", "fake_b")
    t0 = fakes.t
    for m in (1, 128):
        assert (_run(p, m) == MARK["fake_b"]).all()
        assert ops.chosen_path(p, m) == "fake_b"
    q = _layer(1024, 256)
    assert (_run(q, 1) == MARK["fake_b"]).all()
    assert fakes.t - t0 == pytest.approx(cost("fake_b", 256, 256, 1) + cost("fake_b", 256, 256, 128)
                                         + cost("fake_b", 1024, 256, 1))  # nothing timed
    assert kernels.linear(np.ones((3, 256), np.float32), p, path="fake_a")[0, 0] == MARK["fake_a"]


def test_autotune_off_or_small_layers_keep_the_static_path(fakes, monkeypatch):
    monkeypatch.setenv("SPARQ_KERNEL_AUTOTUNE", "0")
    monkeypatch.setattr(cpu, "kernel_path", lambda: "fake_b")
    p = _layer(256, 256)
    assert (_run(p, 1) == MARK["fake_b"]).all() and fakes.t == cost("fake_b", 256, 256, 1)
    monkeypatch.delenv("SPARQ_KERNEL_AUTOTUNE")
    small = _layer(16, 64)
    _run(small, 1)
    assert ops.chosen_path(small, 1) == "fake_b"
