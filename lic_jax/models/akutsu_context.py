"""The entropy model's context of Akutsu et al. 2020 (seed 002; split from ``akutsu2020.py``, which
re-exports every name): the causal self-attention, the context estimator (type-A masked 5×5
convolution, then attention) and the mixing body that gives (σ, μ); the raster-order attention mask,
global or local (``attention_window``, ambiguity 12 of ``akutsu2020``), and its wavefront form.

Three call forms share one set of parameters: parallel over a whole latent (training, the encoder's
estimate), one position with key/value caches (the global coder), and the K positions of one
wavefront with key/value grids (the local coder); ``lic_jax.coding.latent_coders.attention``.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..layers import Conv, MaskedConv
from .base import leaky_relu

__all__ = ["causal_attention_mask", "window_offsets", "CausalSelfAttention", "ContextEstimator", "MixingBody"]


def causal_attention_mask(n: int, width: int | None = None, window: int = 0) -> np.ndarray:
    """(n, n) boolean raster-order mask: query i may read keys j ≤ i (see the module docstring, 5).
    ``window`` > 0 (with the latent's ``width``): only keys within ``window`` rows above and
    ``window`` columns either side of i, the local form that allows wavefront decoding (ambiguity 12)."""
    m = np.tril(np.ones((n, n), bool))
    if window:
        hh, ww = np.divmod(np.arange(n), width)
        m &= (hh[:, None] - hh[None, :] <= window) & (np.abs(ww[:, None] - ww[None, :]) <= window)
    return m


def window_offsets(window: int) -> tuple[np.ndarray, np.ndarray]:
    """The key offsets (Δh, Δw) of a local attention window, row-major over rows −window … 0 and
    columns −window … +window, and whether each precedes-or-is the query in raster order."""
    dh, dw = np.meshgrid(np.arange(-window, 1), np.arange(-window, window + 1), indexing="ij")
    return np.stack([dh.ravel(), dw.ravel()], -1), ((dh < 0) | (dw <= 0)).ravel()


class CausalSelfAttention(nn.Module):
    """Single-head causal self-attention over the raster-ordered positions, residual:
    h + W_o · softmax(q kᵀ/√d_k, mask j ≤ i) v with q, k, v 1×1 projections of h.

    Incremental form (the sequential coder, ``Akutsu2020.gaussian_params_step``): with ``cache =
    (K, V)`` ((B, N, d_k), (B, N, value)) and ``index`` i, ``h`` is the (B, 1, 1, C) features of
    position i only; k_i, v_i are written into slot i and q_i attends to the slots j ≤ i (the
    others are masked with −inf, so unfilled slots never count). Returns (output, (K, V))."""

    key_dim: int = 16
    value_dim: int | None = None
    dtype: Any = None
    window: int = 0

    @nn.compact
    def __call__(self, h, cache=None, index=None):
        b, H, W, C = h.shape
        n, d = H * W, self.dtype
        v_dim = self.value_dim or C
        q_conv, k_conv, v_conv = (Conv(c, 1, 1, dtype=d) for c in (self.key_dim, self.key_dim, v_dim))
        out_conv = Conv(C, 1, 1, dtype=d)  # (creation order = parameter names Conv_0 … Conv_3, as before)
        if cache is not None and index is not None and np.ndim(index) == 2:  # the wavefront form
            return self._wavefront(h, cache, index, q_conv, k_conv, v_conv, out_conv)
        q = q_conv(h).reshape(b, n, self.key_dim)
        k = k_conv(h).reshape(b, n, self.key_dim)
        v = v_conv(h).reshape(b, n, v_dim)
        if cache is None:
            keys, values = k, v
            mask = causal_attention_mask(n, W, self.window)[None]
        else:
            if self.window:
                raise ValueError("a local attention window is decoded by wavefronts (index = positions), "
                                 "not position by position")
            if n != 1:
                raise ValueError(f"the incremental attention takes one position, got {H}x{W}")
            keys = cache[0].at[:, index].set(k[:, 0].astype(cache[0].dtype))
            values = cache[1].at[:, index].set(v[:, 0].astype(cache[1].dtype))
            mask = (jnp.arange(keys.shape[1]) <= index)[None, None]
        logits = jnp.einsum("bid,bjd->bij", q, keys.astype(q.dtype)).astype(jnp.float32) / math.sqrt(self.key_dim)
        logits = jnp.where(mask, logits, -jnp.inf)
        a = jax.nn.softmax(logits, axis=-1)
        o = jnp.einsum("bij,bjv->biv", a.astype(values.dtype), values).reshape(b, H, W, v_dim)
        out = h + out_conv(o.astype(v.dtype))
        return out if cache is None else (out, (keys, values))

    def _wavefront(self, h, cache, pos, q_conv, k_conv, v_conv, out_conv):
        """Local attention at the K positions ``pos`` (K, 2) of one wavefront: ``h`` (K, 1, 1, C)
        their features, ``cache`` = (keys, values) laid out on the latent grid, padded by ``window``
        rows on top and ``window`` columns either side ((H + r, W + 2r, ·)). Writes the K keys and
        values (padding positions, far outside the grid, are dropped), then each query attends to the
        (r + 1) × (2r + 1) slots of its window that precede it in raster order and lie on the grid.
        Every such slot is filled: the wavefront slope exceeds r (``Akutsu2020.wavefront_slope``)."""
        r = self.window
        K, C = h.shape[0], h.shape[-1]
        q = q_conv(h).reshape(K, self.key_dim)
        k = k_conv(h).reshape(K, self.key_dim)
        v = v_conv(h).reshape(K, -1)
        keys, values = cache
        W = keys.shape[1] - 2 * r
        hh, ww = pos[:, 0], pos[:, 1]
        keys = keys.at[hh + r, ww + r].set(k.astype(keys.dtype), mode="drop")
        values = values.at[hh + r, ww + r].set(v.astype(values.dtype), mode="drop")
        offsets, before = window_offsets(r)
        win = lambda a, i, j: lax.dynamic_slice(a, (i, j, 0), (r + 1, 2 * r + 1, a.shape[-1]))  # noqa: E731
        kw = jax.vmap(win, (None, 0, 0))(keys, hh, ww).reshape(K, -1, keys.shape[-1])
        vw = jax.vmap(win, (None, 0, 0))(values, hh, ww).reshape(K, -1, values.shape[-1])
        jh, jw = hh[:, None] + offsets[None, :, 0], ww[:, None] + offsets[None, :, 1]
        own = (offsets[:, 0] == 0) & (offsets[:, 1] == 0)  # the query's own slot: no empty softmax in padding rows
        mask = (jnp.asarray(before)[None] & (jh >= 0) & (jw >= 0) & (jw < W)) | jnp.asarray(own)[None]
        logits = jnp.einsum("kd,kjd->kj", q, kw.astype(q.dtype)).astype(jnp.float32) / math.sqrt(self.key_dim)
        a = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
        o = jnp.einsum("kj,kjv->kv", a.astype(vw.dtype), vw).reshape(K, 1, 1, -1)
        return h + out_conv(o.astype(v.dtype)), (keys, values)


class ContextEstimator(nn.Module):
    """5×5 type-A masked conv → causal self-attention (the output at i reads ŷ at positions < i).

    Incremental form: ``y_hat`` is the (B, 5, 5, M) window of ŷ centred on position i (zeros where
    nothing is decoded yet or outside the latent), ``cache``/``index`` as :class:`CausalSelfAttention`;
    returns ((B, 1, 1, features), cache)."""

    features: int = 128
    key_dim: int = 16
    dtype: Any = None
    window: int = 0

    @nn.compact
    def __call__(self, y_hat, cache=None, index=None):
        h = MaskedConv(self.features, 5, "A", dtype=self.dtype)(y_hat, valid=cache is not None)
        attention = CausalSelfAttention(self.key_dim, dtype=self.dtype, window=self.window)
        if cache is None:
            return attention(h).astype(jnp.float32)
        out, cache = attention(h, cache, index)
        return out.astype(jnp.float32), cache


class MixingBody(nn.Module):
    """concat(context, hyper) → 1×1 → LeakyReLU → causal attention → 1×1 → (σ, μ) (σ = softplus).

    Incremental form (``cache``, ``index``: one position, as :class:`CausalSelfAttention`; ``cache``
    is ignored without attention): returns (σ, μ, cache)."""

    latent: int = 64
    features: int = 192
    key_dim: int = 16
    attention: bool = True
    dtype: Any = None
    window: int = 0

    @nn.compact
    def __call__(self, ctx, hyper, cache=None, index=None):
        d = self.dtype
        h = Conv(self.features, 1, 1, dtype=d)(jnp.concatenate([ctx, hyper], axis=-1))
        h = leaky_relu(h)
        if self.attention:
            if cache is None:
                h = CausalSelfAttention(self.key_dim, dtype=d, window=self.window)(h)
            else:
                h, cache = CausalSelfAttention(self.key_dim, dtype=d, window=self.window)(h, cache, index)
        p = Conv(2 * self.latent, 1, 1, dtype=d)(h).astype(jnp.float32)
        means, s = jnp.split(p, 2, axis=-1)
        return (jax.nn.softplus(s), means) if index is None else (jax.nn.softplus(s), means, cache)
