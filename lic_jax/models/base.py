"""Shared pieces of the compression models.

Every model is a Flax ``linen`` module on NHWC images in [0, 1]. ``model.apply(variables, x,
train=..., quant=..., rngs={'noise': key})`` returns a dict with ``x_hat``, ``likelihoods``
({'y': ..., 'z': ...}) and the latents ``y``, ``y_hat`` (and ``z``, ``z_hat``).

Pad/crop rule for sizes that are not a multiple of the model's ``downsampling`` (16 for
factorized models, 64 with a hyperprior): the image is zero-padded symmetrically (left/top get
``pad // 2``, as CompressAI's ``eval_model``), coded, and ``x_hat`` is cropped back. Rates are
always divided by the *unpadded* pixel count.

Quantisation (``train=True``): ``quant='noise'`` (the papers' additive uniform noise, default),
``'ste'`` (straight-through rounding) or ``'mixed'`` (noise for the rate, straight-through
rounding for the synthesis). ``train=False`` rounds (around medians / means) with the true zero
gradient, as CompressAI's eval mode.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..layers import Conv

__all__ = ["quant_modes", "pad_amounts", "pad_image", "crop_image", "leaky_relu", "total_bits", "bpp", "run",
           "window_dot", "window_taps", "dense_run"]


def quant_modes(train: bool, quant: str | None):
    """(rate_mode, synthesis_mode) for a forward pass."""
    if not train:
        return "round", "round"
    quant = quant or "noise"
    if quant == "mixed":
        return "noise", "ste"
    if quant not in ("noise", "ste"):
        raise ValueError(f"quant must be 'noise', 'ste' or 'mixed', got {quant!r}")
    return quant, quant


def pad_amounts(h: int, w: int, multiple: int):
    """((top, bottom), (left, right)) zero padding to the next multiple (centred, CompressAI rule)."""
    nh = -(-h // multiple) * multiple
    nw = -(-w // multiple) * multiple
    top, left = (nh - h) // 2, (nw - w) // 2
    return (top, nh - h - top), (left, nw - w - left)


def pad_image(x, multiple: int):
    (t, b), (l, r) = pad_amounts(x.shape[-3], x.shape[-2], multiple)
    if t == b == l == r == 0:
        return x
    pad = [(0, 0)] * (x.ndim - 3) + [(t, b), (l, r), (0, 0)]
    return (np.pad if isinstance(x, np.ndarray) else jnp.pad)(x, pad)


def crop_image(x, h: int, w: int):
    """Inverse of :func:`pad_image`: the centred (h, w) window."""
    t, l = (x.shape[-3] - h) // 2, (x.shape[-2] - w) // 2
    return x[..., t : t + h, l : l + w, :]


def leaky_relu(x):
    return jnp.where(x >= 0, x, 0.01 * x)


def run(layers, x):
    """Apply a list of layers / activations in order (the models' ``g_a``, ``g_s``, ``h_a``, ``h_s``)."""
    for layer in layers:
        x = layer(x)
    return x


# -- the autoregressive models' per-position parameter arithmetic (mbt2018, lee2019) -------------
def _dot(x, w, dtype=None):
    dtype = dtype or x.dtype
    return jnp.dot(x.astype(dtype), w.astype(dtype)).astype(jnp.float32)


def _window_rows(mask, C: int):
    """Row indexes of the unmasked taps in a flattened (k·k·C) window; a slice when they are a
    prefix (causal masks)."""
    taps = np.flatnonzero(np.asarray(mask).ravel())
    if np.array_equal(taps, np.arange(taps.size)):
        return slice(0, taps.size * C)
    return (taps[:, None] * C + np.arange(C)[None, :]).ravel()


def window_taps(kernel, mask):
    """The unmasked taps of a (k, k, C, F) kernel as the (taps·C, F) matrix that
    :func:`window_dot` multiplies by. The autoregressive coders compute it once per codec and pass
    it to every wavefront step, so the step does not copy the kernel's taps each time (issue 19)."""
    k, C = kernel.shape[0], kernel.shape[2]
    return kernel.reshape(k * k * C, -1)[_window_rows(mask, C)]


def window_dot(patches, kernel, mask, dtype=None, taps=None):
    """Σ over the unmasked taps of a (K, k, k, C) window × (k, k, C, F) kernel → (K, F): the
    masked k×k 'valid' convolution of one output pixel (masked taps contribute exactly 0 and are
    skipped). ``taps``: the kernel's :func:`window_taps`, when precomputed (the same numbers, so
    the same result bit for bit)."""
    K, k, C = patches.shape[0], patches.shape[1], patches.shape[3]
    rows = _window_rows(mask, C)
    w = window_taps(kernel, mask) if taps is None else taps
    return _dot(patches.reshape(K, k * k * C)[:, rows], w, dtype)


def dense_run(layers, h, dtype=None):
    """Run 1×1 ``Conv`` layers (and activations) on (K, C) rows as matrix products."""
    for layer in layers:
        if isinstance(layer, Conv):
            p = layer.variables["params"]
            h = _dot(h, p["kernel"][0, 0], dtype) + p["bias"]
        else:
            h = layer(h)
    return h


def total_bits(likelihoods):
    """Σ −log2 p over every likelihood tensor (per batch element: shape (B,))."""
    bits = 0.0
    for lik in likelihoods.values():
        bits = bits + jnp.sum(-jnp.log2(lik).reshape(lik.shape[0], -1), axis=1)
    return bits


def bpp(likelihoods, num_pixels):
    """Estimated bits per pixel of a batch: Σ −log2 p / (B·H·W) (CompressAI convention)."""
    return sum(jnp.sum(jnp.log(l)) for l in likelihoods.values()) / (-np.log(2.0) * num_pixels)
