"""Layers: GDN/IGDN, CompressAI-padded (transposed) convolutions, masked convolutions, bounds."""

from .bounds import lower_bound, nonneg_init, nonneg_value
from .conv import Conv, ConvTranspose, MaskedConv, causal_mask, conv2d, conv_transpose2d
from .gdn import GDN

__all__ = [
    "GDN",
    "Conv",
    "ConvTranspose",
    "MaskedConv",
    "causal_mask",
    "conv2d",
    "conv_transpose2d",
    "lower_bound",
    "nonneg_init",
    "nonneg_value",
]
