"""sparq: a benchmark and reproducibility suite for compressed transformers."""

__version__ = "0.1.0"
