"""Entropy models: factorized density (entropy bottleneck), conditional Gaussian, quantisation."""

from .factorized import EntropyBottleneck, fit_quantiles, logits_cumulative
from .gaussian import (
    SCALES_LEVELS,
    SCALES_MAX,
    SCALES_MIN,
    GaussianConditional,
    gaussian_likelihood,
    scale_indexes,
    scale_table,
)
from .quantization import MODES, quantize

__all__ = [
    "EntropyBottleneck",
    "fit_quantiles",
    "logits_cumulative",
    "GaussianConditional",
    "gaussian_likelihood",
    "scale_indexes",
    "scale_table",
    "SCALES_MIN",
    "SCALES_MAX",
    "SCALES_LEVELS",
    "quantize",
    "MODES",
]
