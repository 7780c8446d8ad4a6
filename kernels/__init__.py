"""sparq kernels: packed sparse int8 formats, Numba kernels (AVX-512 VNNI + portable) and a
drop-in ``nn.Linear`` replacement.

Public API::

    SparseInt8Linear.from_linear(linear, format="csr"|"block1x4"|"nm"|"dense", bits=8,
                                 weight_scale=None, act_scale=None)
    convert_model(model, format="csr", filter=None, ...)      # swaps encoder Linears in place
    packed_bytes(packed) / packed_model_bytes(model)           # exact bytes (encoder_bytes_packed)
    save(path, packed_or_dict) / load(path)                    # raises PackedFormatError
    load_model(directory)        # a whole exported model (kernels.bundle) on the packed kernels
    pack(weight, format, bias=None, bits=8, scale=None)        # numpy-level packing
    linear(x, packed, act_scale=None, epilogue=None|"gelu")    # numpy-level kernel call
    fuse_shared_input(model) / fuse_epilogues(model)           # encoder fusions (inference)
    fuse_attention(model)        # after fuse_shared_input: attention on the fused Q/K/V output
    fuse_for_inference(model)    # all three, in order (what the timed encoders run)
    kernel_paths(model, m=None)  # the kernel paths its layers ran (autotuned dispatch)
"""

from .attention import PackedSelfAttention, fuse_attention
from .bundle import BundleError, load_model
from .cpu import cpu_flags_string, has_vnni512
from .encoder import DenseAddNorm, fuse_epilogues, fuse_for_inference
from .formats import FORMATS, PackedLinear, pack, packed_bytes, quantize_weight
from .io import PackedFormatError, load, save
from .linear import (
                     SparseInt8Linear,
                     convert_model,
                     fuse_shared_input,
                     kernel_paths,
                     load_packed_into,
                     packed_layers,
                     packed_model_bytes,
)
from .ops import linear, reference

__all__ = [
    "FORMATS", "BundleError", "DenseAddNorm", "PackedFormatError", "PackedLinear", "SparseInt8Linear",
    "PackedSelfAttention", "convert_model", "cpu_flags_string", "fuse_attention", "fuse_epilogues", "fuse_for_inference", "fuse_shared_input", "has_vnni512", "kernel_paths", "linear", "load", "load_model", "load_packed_into", "pack",
    "packed_bytes", "packed_layers", "packed_model_bytes", "quantize_weight", "reference", "save",
]
