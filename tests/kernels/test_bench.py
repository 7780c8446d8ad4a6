import csv

import kernels.bench.__main__ as bench
from kernels import cpu


def test_layer_bench_records_kernel_path(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARQ_TIMING_DIR", str(tmp_path))  # a private timing window
    monkeypatch.setattr(bench, "measure_bandwidth_gbs", lambda: 10.0)  # machine probes: slow
    monkeypatch.setattr(bench, "measure_int8_peak_gmacs", lambda: (100.0, "stub"))
    out = tmp_path / "bench.csv"
    bench.main(["--shapes", "64x32", "--m", "1,9", "--sparsity", "0.9,2:4", "--pattern", "block1x4",
          "--backends", "torch_fp32", "--threads", "1", "--repeats", "1", "--no-mlflow", "--settle", "0",
          "--csv", str(out)])
    rows = list(csv.DictReader(out.open()))
    sparq = [r for r in rows if r["backend"].startswith("sparq")]
    assert len(sparq) == 4 and {r["backend"] for r in sparq} == {"sparq_block1x4", "sparq_nm"}
    assert all(r["kernel_path"] in cpu.supported_paths() for r in sparq)  # the path that ran
    assert all(r["kernel_path"] == "" for r in rows if not r["backend"].startswith("sparq"))
    assert all(r["cpu_flags"] == cpu.cpu_flags_string() for r in rows)
    assert all(r["quiet"] in ("True", "False") and r["cpu_busy"] != "" for r in rows)
    assert all(0.0 <= float(r["others_busy"]) <= 1.0 for r in rows)
    assert not (tmp_path / "sparq-timing.active").exists()  # the window is released
    assert {r["round"] for r in rows} == {"1"}


def test_layer_bench_rounds_pair_ratios_within_each_round(tmp_path, monkeypatch, capsys):
    """``--rounds 2``: the grid is timed twice (a ``round`` column), and the summary's ratios
    are taken within each round (median and range over rounds)."""
    monkeypatch.setenv("SPARQ_TIMING_DIR", str(tmp_path))
    monkeypatch.setattr(bench, "measure_bandwidth_gbs", lambda: 10.0)
    monkeypatch.setattr(bench, "measure_int8_peak_gmacs", lambda: (100.0, "stub"))
    out = tmp_path / "bench.csv"
    bench.main(["--shapes", "64x32", "--m", "9", "--sparsity", "0.9", "--pattern", "block1x4",
                "--backends", "torch_fp32", "--threads", "1", "--repeats", "1", "--no-mlflow",
                "--settle", "0", "--rounds", "2", "--csv", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["round"] for r in rows) == ["1", "1", "2", "2"]
    assert "ratios over rounds" in capsys.readouterr().out
    fake = [{"k": 8, "n": 8, "m": 1, "sparsity": "0.9", "pattern": "csr", "backend": b,
             "median_ms": t, "round": r}
            for r, (fp, ours) in ((1, (2.0, 1.0)), (2, (8.0, 2.0)))
            for b, t in (("torch_fp32", fp), ("sparq_csr", ours))]
    # paired within rounds: 2x and 4x (medians across rounds would say 5 / 1.5 = 3.33x)
    assert bench.round_ratios(fake) == {(8, 8, 1, "0.9", "csr"): {"vs fp32": [2.0, 4.0]}}


def test_profile_self_times_split_the_forward_by_module_class():
    import time

    import torch
    from torch import nn

    from kernels.bench.profile import self_times

    class Sleepy(nn.Module):
        def __init__(self, s, child=None):
            super().__init__()
            self.s, self.child = s, child

        def forward(self, x):
            time.sleep(self.s)
            return self.child(x) if self.child is not None else x

    class Inner(Sleepy):
        pass

    model = Sleepy(0.004, Inner(0.002))
    shares, wall = self_times(model, lambda: model(torch.zeros(1)), repeats=3)
    assert set(shares) == {"Sleepy", "Inner"}
    assert shares["Sleepy"] >= 3.9 and shares["Inner"] >= 1.9  # sleeps never return early
    assert 0.8 * wall <= sum(shares.values()) <= wall  # self times: nothing counted twice


def test_model_bench_rounds_on_a_tiny_encoder(tmp_path, monkeypatch, capsys):
    """``--model --rounds 2`` on a 1-layer encoder: every backend (sparq csr and block1x4,
    torch, ONNX Runtime when it exports) timed in both rounds, ratios within each round;
    ``--csv PATH`` writes exactly PATH."""
    import kernels.bench.model as model_bench

    monkeypatch.setenv("SPARQ_TIMING_DIR", str(tmp_path))
    monkeypatch.setitem(model_bench.CONFIGS, "tiny", dict(hidden_size=32, num_hidden_layers=1,
                                                          num_attention_heads=2,
                                                          intermediate_size=64))
    monkeypatch.setattr(model_bench, "SEQ", 16)
    out = tmp_path / "e2e.csv"  # written exactly there, whatever its name
    bench.main(["--model", "--models", "tiny", "--batches", "1", "--threads", "1", "--repeats",
                "1", "--rounds", "2", "--no-mlflow", "--settle", "0", "--csv", str(out)])
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == ["e2e.csv"]
    rows = list(csv.DictReader(out.open()))
    backends = {r["backend"] for r in rows}
    assert {"torch_fp32", "sparq_csr", "sparq_block1x4"} <= backends
    for be in backends:
        assert sorted(r["round"] for r in rows if r["backend"] == be) == ["1", "2"]
    fp = {r["round"]: float(r["median_ms"]) for r in rows if r["backend"] == "torch_fp32"}
    for r in rows:  # each ratio against the fp32 time of its own round
        assert abs(float(r["speedup_vs_fp32"]) - fp[r["round"]] / float(r["median_ms"])) < 1e-9
    assert "ratios over 2 rounds" in capsys.readouterr().out


def test_publish_keeps_every_machines_rows(tmp_path):
    """``kernels.bench.publish``: a run replaces the published rows of its own (machine, isa,
    threads) only; rows written before the ``machine`` column get it from ``cpu_flags``."""
    from kernels.bench.publish import main as publish

    zen = "AMD EPYC | llvm:znver3 | cores:2 | avx2 fma"
    xeon = "Intel Xeon | llvm:rocketlake | cores:2 | avx512_vnni amx_int8"
    pub = tmp_path / "bench.csv"
    pub.write_text("k,backend,median_ms,threads,cpu_flags\n768,sparq_csr,1.0,2," + zen + "\n")

    def run(name, isa, ms):
        p = tmp_path / name
        p.write_text("k,backend,median_ms,threads,cpu_flags,machine,isa\n" + "".join(
            f"768,sparq_csr,{t},2,{xeon},Intel Xeon (rocketlake),{isa}\n" for t in ms))
        return str(p)

    publish([run("a.csv", "auto", [0.5]), run("b.csv", "avx2", [0.7]), "--into", str(pub)])
    publish([run("c.csv", "auto", [0.4, 0.45]), "--into", str(pub)])  # a rerun replaces "auto"
    rows = list(csv.DictReader(pub.open()))
    got = sorted((r["machine"], r["isa"], r["median_ms"]) for r in rows)
    assert got == [("AMD EPYC (znver3)", "auto", "1.0"), ("Intel Xeon (rocketlake)", "auto", "0.4"),
                   ("Intel Xeon (rocketlake)", "auto", "0.45"), ("Intel Xeon (rocketlake)", "avx2", "0.7")]
