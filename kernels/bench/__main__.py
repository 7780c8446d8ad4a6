"""``python -m kernels.bench``: layer benchmark of sparq kernels vs PyTorch / ONNX Runtime.

Quick default: BERT-base shapes, M in {1, 128}, sparsity {2:4, 0.9}, unstructured + 1x4
blocks. ``--full`` runs the whole grid; ``--model`` runs the end-to-end encoders instead.
"""

from __future__ import annotations

import csv
import os
import sys
import warnings

import numpy as np

from suite.errors import Parser, SparqError, cli_errors

from .. import cpu
from .common import (
    REPO,
    OtherLoad,
    check_load,
    log_mlflow,
    measure_bandwidth_gbs,
    measure_int8_peak_gmacs,
    path_line,
    quiet_columns,
    quiet_window,
    set_threads,
    timeit,
)

SHAPES = {"bert-base": ["768x768", "768x3072", "3072x768"],
          "minilm": ["384x384", "384x1536", "1536x384"]}
FORMAT_OF = {"unstructured": "csr", "block1x4": "block1x4", "nm": "nm"}
COLUMNS = ["k", "n", "m", "sparsity", "pattern", "backend", "median_ms", "min_ms", "max_ms",
           "speedup_vs_fp32", "speedup_vs_onednn", "roofline_ms", "roofline_frac", "packed_bytes",
           "threads", "kernel_path", "cpu_flags", "loadavg", "cpu_busy", "quiet", "others_busy",
           "round", "machine", "isa"]


def parse(argv=None):
    ap = Parser(prog="python -m kernels.bench", description=__doc__)
    ap.add_argument("--shapes", help="KxN list, e.g. 768x3072,3072x768 (K = in, N = out)")
    ap.add_argument("--m", help="activation rows, e.g. 1,128")
    ap.add_argument("--sparsity", help="e.g. 0.9,2:4")
    ap.add_argument("--pattern", help="unstructured,block1x4 (2:4 always uses nm)")
    ap.add_argument("--backends", help="comma list; default all")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--csv", default=None,
                    help="the CSV to write, exactly this path (default runs/kernels/bench.csv, or "
                         "bench_model.csv with --model; git-ignored; results/kernels/ to publish)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1,
                    help="time the whole grid (or, with --model, each batch size) this many "
                         "times, one after the other (same weights and inputs); the summary gives "
                         "each ratio's median and range over the rounds, each ratio taken within "
                         "its round (this VM drifts 1.5-2x within minutes)")
    ap.add_argument("--full", action="store_true", help="whole grid (both models)")
    ap.add_argument("--model", action="store_true", help="end-to-end encoders instead of layers")
    ap.add_argument("--models", default="minilm,bert-base", help="with --model")
    ap.add_argument("--batches", default="1,8", help="with --model")
    ap.add_argument("--no-fused-attention", dest="fused_attention", action="store_false",
                    help="with --model: torch's attention on the sparq encoders (A/B)")
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds to wait for idle CPUs in the timing window (default suite.quiet's)")
    a = ap.parse_args(argv)
    a.csv = a.csv or os.path.join(REPO, "runs", "kernels",
                                  "bench_model.csv" if a.model else "bench.csv")
    shapes = a.shapes or ",".join(SHAPES["bert-base"] + (SHAPES["minilm"] if a.full else []))
    a.shape_list = [_ints(s, "--shapes", "KxN, e.g. 768x3072", "x", 2) for s in shapes.split(",")]
    a.m_list = [_ints(v, "--m", "a positive integer")[0] for v in (a.m or ("1,16,128,512" if a.full else "1,128")).split(",")]
    a.sp_list = (a.sparsity or ("2:4,0.8,0.9,0.95" if a.full else "2:4,0.9")).split(",")
    a.pat_list = (a.pattern or "unstructured,block1x4").split(",")
    for sp in a.sp_list:
        if sp != "2:4" and not (sp.replace(".", "", 1).isdigit() and 0 <= float(sp) < 1):
            raise SparqError(f"--sparsity: '{sp}' is not 2:4 or a fraction in [0, 1)")
    if bad := [p for p in a.pat_list if p not in FORMAT_OF]:
        raise SparqError(f"--pattern: '{bad[0]}'; allowed: {', '.join(FORMAT_OF)}")
    if a.rounds < 1 or a.repeats < 1 or a.threads < 1:
        raise SparqError("--rounds, --repeats and --threads must be >= 1")
    return a


def _ints(text: str, option: str, what: str, sep: str = ",", n: int = 1) -> tuple[int, ...]:
    parts = text.lower().split(sep)
    if len(parts) != n or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise SparqError(f"{option}: '{text}' is not {what}")
    return tuple(int(p) for p in parts)


def make_weight(rng, n, k, sp, pattern):
    """Random weight pruned to exactly the given sparsity (by count) in the given pattern."""
    w = rng.standard_normal((n, k)).astype(np.float32)
    if sp == "2:4":
        g4 = np.abs(w).reshape(n, k // 4, 4)
        drop = np.argsort(g4, axis=2)[:, :, :2]
        np.put_along_axis(w.reshape(n, k // 4, 4), drop, 0.0, axis=2)
        return w
    s = float(sp)
    if pattern == "block1x4":
        g = np.abs(w).reshape(n, k // 4, 4).sum(2).ravel()
        kill = np.argsort(g)[: int(round(s * g.size))]
        mask = np.ones(g.size, bool)
        mask[kill] = False
        return w * np.repeat(mask.reshape(n, k // 4), 4, axis=1)
    flat = np.abs(w).ravel()
    kill = np.argsort(flat)[: int(round(s * flat.size))]
    w.ravel()[kill] = 0.0
    return w


def main(argv=None):
    a = parse(argv)
    warnings.filterwarnings("ignore")
    set_threads(a.threads)
    if a.model:
        from .model import run_model_bench

        return run_model_bench(a)
    flags = cpu.cpu_flags_string()
    path = cpu.kernel_path()
    print(f"cpu: {flags}\nthreads: {a.threads}  {path_line()}")
    rows = []
    with quiet_window(a.settle) as q:  # other sparq loops pause; every row records q
        load0 = check_load(a.threads)
        bw = measure_bandwidth_gbs()  # machine probes: once, for every round's roofline
        peak, peak_src = measure_int8_peak_gmacs()
        print(f"measured bandwidth {bw:.1f} GB/s, dense int8 peak {peak:.0f} GMAC/s ({peak_src})")
        for r in range(a.rounds):
            if a.rounds > 1:
                print(f"\n=== round {r + 1} of {a.rounds}")
            got = _measure_layers(a, flags, path, quiet_columns(q), bw, peak)
            rows += [{**row, "round": r + 1} for row in got]
    os.makedirs(os.path.dirname(os.path.abspath(a.csv)), exist_ok=True)
    with open(a.csv, "w", newline="") as fh:
        wr = csv.DictWriter(fh, COLUMNS)
        wr.writeheader()
        wr.writerows(rows)
    print(f"wrote {a.csv} ({len(rows)} rows)")
    if a.rounds == 1:
        _summary(rows)
    else:
        _round_summary(rows)
    load1 = check_load(a.threads)
    if not a.no_mlflow:
        mets = {}
        for r in rows:  # the median over rounds
            name = (f"{r['backend']}_{r['k']}x{r['n']}_m{r['m']}_{r['sparsity']}_{r['pattern']}_ms"
                    .replace(":", "-"))
            mets.setdefault(name, []).append(r["median_ms"])
        mets = {k: float(np.median(v)) for k, v in mets.items()}
        mets.update(bandwidth_gbs=bw, int8_peak_gmacs=peak, loadavg_start=load0,
                    loadavg_end=load1)
        run = log_mlflow("kernels-bench", {"argv": " ".join(sys.argv[1:]), "threads": a.threads,
                                           "cpu_flags": flags, "kernel_path": path, "shapes": a.shape_list,
                                           "m": a.m_list, "sparsity": a.sp_list,
                                           "patterns": a.pat_list}, mets, [a.csv])
        print(f"mlflow run {run}")
    return rows


def _measure_layers(a, flags, path, quiet, bw, peak):
    """Every (shape, M, sparsity, pattern): the baselines and ours side by side (roofline from
    the measured bandwidth ``bw`` GB/s and int8 ``peak`` GMAC/s)."""
    import torch

    from .. import ops
    from ..linear import SparseInt8Linear
    from .baselines import BASELINES

    wanted = set(a.backends.split(",")) if a.backends else None
    rng = np.random.default_rng(0)
    rows = []
    for k, n in a.shape_list:
        for m in a.m_list:
            x = rng.standard_normal((m, k)).astype(np.float32)
            b = rng.standard_normal(n).astype(np.float32)
            others = OtherLoad()  # CPU time of other processes while this block is timed
            dense_ref = {}
            w0 = rng.standard_normal((n, k)).astype(np.float32)
            for name in ("torch_fp32", "torch_int8_fbgemm", "torch_int8_onednn", "onnxruntime_int8"):
                if wanted and name not in wanted and name != "torch_fp32":
                    continue
                try:
                    fn = BASELINES[name](w0, b, x)
                    dense_ref[name] = timeit(fn, a.repeats)
                except Exception as e:  # backend missing on this machine
                    print(f"  {name}: skipped ({e})")
            for sp in a.sp_list:
                pats = ["nm"] if sp == "2:4" else a.pat_list
                for pat in pats:
                    w = make_weight(rng, n, k, sp, pat)
                    res = dict(dense_ref)
                    if not wanted or "torch_csr_fp32" in wanted:
                        res["torch_csr_fp32"] = timeit(BASELINES["torch_csr_fp32"](w, b, x), a.repeats)
                    fmt = FORMAT_OF[pat]
                    lin = torch.nn.Linear(k, n)
                    with torch.no_grad():
                        lin.weight.copy_(torch.from_numpy(w))
                        lin.bias.copy_(torch.from_numpy(b))
                    layer = SparseInt8Linear.from_linear(lin, format=fmt)
                    xt = torch.from_numpy(x)
                    ours = f"sparq_{fmt}"
                    res[ours] = timeit(lambda layer=layer, xt=xt: layer(xt), a.repeats)
                    ran = ops.chosen_path(layer.packed, m) or path  # autotuned, forced or static
                    nnz = int((w != 0).sum())
                    nbytes = layer.packed_bytes + 4 * m * k + 4 * m * n
                    roof = max(nbytes / (bw * 1e9), nnz * m / (peak * 1e9)) * 1e3
                    fp = res["torch_fp32"][0]
                    one = res.get("torch_int8_onednn", (np.nan,))[0]
                    for be, (med, lo, hi) in res.items():
                        if wanted and be not in wanted and not be.startswith("sparq"):
                            continue
                        rows.append({"k": k, "n": n, "m": m, "sparsity": sp, "pattern": pat,
                                     "backend": be, "median_ms": med, "min_ms": lo, "max_ms": hi,
                                     "speedup_vs_fp32": fp / med, "speedup_vs_onednn": one / med,
                                     "roofline_ms": roof if be == ours else "",
                                     "roofline_frac": roof / med if be == ours else "",
                                     "packed_bytes": layer.packed_bytes if be == ours else "",
                                     "threads": a.threads,
                                     "kernel_path": ran if be.startswith("sparq") else "",
                                     "cpu_flags": flags,
                                     "loadavg": round(os.getloadavg()[0], 2), **quiet,
                                     "others_busy": others.share(),
                                     "machine": cpu.machine_label(),
                                     "isa": cpu.forced_path() or "auto"})
                    _print_block(k, n, m, sp, pat, res, ours, roof, ran)
    return rows


def _print_block(k, n, m, sp, pat, res, ours, roof, ran):
    fp = res["torch_fp32"][0]
    print(f"\n{k}x{n} M={m} sparsity={sp} pattern={pat} (sparq kernel path: {ran})")
    for be, (med, lo, hi) in sorted(res.items(), key=lambda kv: kv[1][0]):
        extra = f"  roofline {roof:.3f} ms -> {roof / med:.0%} of bound" if be == ours else ""
        print(f"  {be:20s} {med:8.3f} ms [{lo:.3f}-{hi:.3f}]  x{fp / med:5.2f} vs fp32{extra}")


def _summary(rows):
    print("\nsummary (median ms; ratio = torch_fp32 / backend):")
    print(f"{'shape':>9} {'M':>4} {'sparsity':>8} {'pattern':>12} {'ours':>7} {'fp32':>7} "
          f"{'onednn':>7} {'fbgemm':>7} {'ort':>7} {'csr32':>7} {'vs fp32':>7} {'vs onednn':>9}")
    key = {}
    for r in rows:
        key.setdefault((r["k"], r["n"], r["m"], r["sparsity"], r["pattern"]), {})[r["backend"]] = r
    for (k, n, m, sp, pat), d in key.items():
        ours = next(v for b, v in d.items() if b.startswith("sparq"))

        def g(b, d=d):
            return d[b]["median_ms"] if b in d else float("nan")
        print(f"{k}x{n:<4} {m:>4} {sp:>8} {pat:>12} {ours['median_ms']:7.3f} {g('torch_fp32'):7.3f} "
              f"{g('torch_int8_onednn'):7.3f} {g('torch_int8_fbgemm'):7.3f} "
              f"{g('onnxruntime_int8'):7.3f} {g('torch_csr_fp32'):7.3f} "
              f"{ours['speedup_vs_fp32']:6.2f}x {ours['speedup_vs_onednn']:8.2f}x")


def round_ratios(rows) -> dict:
    """{(k, n, m, sparsity, pattern): {"vs fp32" | "vs onednn" | "vs ort": [ratio per round]}}
    for the sparq rows, each ratio taken within its round (same machine state)."""
    by = {}
    for r in rows:
        by.setdefault((r["k"], r["n"], r["m"], r["sparsity"], r["pattern"], r["round"]), {})[
            r["backend"]] = r["median_ms"]
    out = {}
    for (*cell, _), d in by.items():
        ours = next((v for b, v in d.items() if b.startswith("sparq")), None)
        if ours is None:
            continue
        rat = out.setdefault(tuple(cell), {})
        for label, ref in (("vs fp32", "torch_fp32"), ("vs onednn", "torch_int8_onednn"),
                           ("vs ort", "onnxruntime_int8")):
            if ref in d:
                rat.setdefault(label, []).append(d[ref] / ours)
    return out


def _round_summary(rows):
    print("\nratios over rounds (median [min-max]; each ratio within one round):")
    for (k, n, m, sp, pat), rat in round_ratios(rows).items():
        cells = "  ".join(f"{label} {np.median(v):5.2f}x [{min(v):.2f}-{max(v):.2f}]"
                          for label, v in rat.items())
        print(f"{k}x{n:<4} {m:>4} {sp:>5} {pat:>12}  {cells}")


@cli_errors
def cli(argv=None) -> int:
    """The command: bad options, an unwritable CSV, are one `sparq: error:` line (suite.errors)."""
    main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
