"""The kernel figure's data: one panel per (machine, M), forced kernel paths as series of their
own, baselines from each machine's unforced run."""

import pytest

from suite.report.load import parse_kernel_csv
from suite.report.plots import kernel_panels, render_kernels

CSV = """k,n,m,sparsity,pattern,backend,median_ms,speedup_vs_fp32,cpu_flags,machine,isa
768,768,1,0.9,block1x4,sparq_block1x4,1,2.0,AMD EPYC | llvm:znver3 | cores:2,,
768,768,1,0.9,block1x4,torch_fp32,2,1.0,AMD EPYC | llvm:znver3 | cores:2,,
768,768,128,0.9,block1x4,sparq_block1x4,1,8.0,AMD EPYC | llvm:znver3 | cores:2,,
768,3072,128,0.9,block1x4,sparq_block1x4,1,6.0,AMD EPYC | llvm:znver3 | cores:2,,
768,768,1,0.9,block1x4,sparq_block1x4,1,4.0,x,Xeon (rocketlake),auto
768,768,1,0.9,block1x4,torch_fp32,1,1.0,x,Xeon (rocketlake),auto
768,768,1,0.9,block1x4,sparq_block1x4,1,3.0,x,Xeon (rocketlake),avx2
768,768,1,0.9,block1x4,torch_fp32,1,1.0,x,Xeon (rocketlake),avx2
768,768,1,2:4,nm,sparq_nm,1,1.5,x,Xeon (rocketlake),auto
"""


def test_kernel_panels_split_machines_and_m(tmp_path):
    panels = kernel_panels(parse_kernel_csv(CSV))
    assert set(panels) == {("AMD EPYC (znver3)", 1), ("AMD EPYC (znver3)", 128), ("Xeon (rocketlake)", 1)}
    assert panels[("AMD EPYC (znver3)", 128)] == {"sparq_block1x4": [(pytest.approx(0.9), 7.0)]}
    xeon = panels[("Xeon (rocketlake)", 1)]
    assert xeon["sparq_block1x4 [avx2]"] == [(pytest.approx(0.9), 3.0)]
    assert xeon["sparq_block1x4"] == [(pytest.approx(0.9), 4.0)]
    assert xeon["sparq_nm"] == [(pytest.approx(0.5), 1.5)]
    assert xeon["torch_fp32"] == [(pytest.approx(0.9), 1.0)]  # the forced run's baseline dropped
    figs = render_kernels(panels, tmp_path, "test")
    assert figs[0].png.is_file() and figs[0].svg.read_text().count("M = 1") >= 2
