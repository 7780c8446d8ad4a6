"""AVX2 (and AVX-VNNI) int8 kernels emitted from Numba through llvmlite IR intrinsics.

Dot product without VNNI: ``vpmaddubsw`` (u8 x s8 pairs -> saturating int16) + ``vpmaddwd``
(int16 pairs x 1 -> int32). Saturation is avoided by the *sign trick*, not by 7-bit activations
or split pairs: the unsigned operand is |w| (<= 128) and the signed one is psign(x, w) =
x * sign(w), so every product is |w| * |x| <= 128 * 127 = 16256 and a pair sum <= 32512 fits
int16: exact for full 8-bit weights and activation codes in [-127, 127]. (An activation code of
-128, possible only with a static scale and the default [-128, 127] clamp, is flagged by the
quantize pass and that call runs on the portable kernels.) Activations stay signed: no +128
offset and no compensation term. On AVX-VNNI (``isa="avx_vnni"``) one VEX ``vpdpbusd`` does the
same u8 x s8 4-way dot-accumulate.

Kernels (one intrinsic generator each, register-blocked):
* ``block_gemm``: sparse 1x4 block rows x R = 8/4/2/1 chunks of 8 activation rows in ymm
  registers; activations laid out [K/4][Mpad][4] int8 (one 32-bit quad per row and group).
* ``block_gemm_dense``: full block rows (3:4, dense): a 4 rows x 4 chunks register tile, one
  activation load feeds 4 weight rows.
* ``block_gemm_pp`` (unstructured): blocks of two occupied input pairs of a row on int8 pair
  activations ([K/2][Mpad][2]), ``vpunpck{l,h}wd`` making the 4-byte quads per 16 rows.
* ``nm_gemm`` (2:4, M >= 2): output rows in the vector lanes; per activation row the 16 bytes
  [x | -x] of 8 inputs are broadcast and one ``vpshufb`` with a stored per-row mask picks each
  weight's activation with the weight's sign applied (``avx2_nm``).
* ``gemv``: the latency path for M <= 8: the weight rows are walked once, 8 blocks at a time
  (``vpgatherdd`` of the activation quads, or a plain load for full rows), with the few
  activation rows' accumulators held in registers. Quantization, kernel and epilogue run in one
  jitted call (one dispatch).

Modules: ``avx2_intrinsics`` (IR helpers, block-row intrinsics, epilogue), ``avx2_gemm``
(the batched kernels and their weight forms), ``avx2_nm`` (2:4), ``avx2_latency`` (M <= 8); this module re-exports
their public names. Import only where ``cpu.kernel_path()`` allows it (compiling AVX2 code
elsewhere fails).
"""

from __future__ import annotations

from .avx2_gemm import (
    PANEL,
    block_gemm,
    block_gemm_dense,
    block_gemm_pp,
    block_gemm_slab,
    dense_blocks,
    pairpair_form,
    quantize_layout,
    quantize_layout_dynamic,
    quantize_pairs,
)
from .avx2_intrinsics import ISA
from .avx2_latency import gemv, gemv1, gemv1_window, gemv_form, window_form
from .avx2_nm import nm_gemm, nm_lane_form, quantize_signed, quantize_signed_dynamic
from .avx2_nm import panel_rows as nm_panel_rows

__all__ = ["ISA", "PANEL", "block_gemm", "block_gemm_dense", "block_gemm_pp", "block_gemm_slab",
           "dense_blocks", "gemv", "gemv1", "gemv1_window", "gemv_form", "nm_gemm", "nm_lane_form",
           "nm_panel_rows", "pairpair_form", "quantize_layout", "quantize_layout_dynamic",
           "quantize_pairs", "quantize_signed", "quantize_signed_dynamic", "window_form"]
