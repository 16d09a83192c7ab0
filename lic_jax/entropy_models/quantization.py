"""Quantisation proxies.

modes:
  ``noise``  additive U(−½, ½) noise (Ballé 2017 §2; the papers' training proxy);
  ``ste``    round around ``means`` with a straight-through (identity) gradient;
  ``round``  round around ``means`` with the true (zero) gradient of rounding — CompressAI's
             ``"dequantize"``, used for evaluation;
A model's ``mixed`` mode uses ``noise`` for the rate and ``ste`` for the synthesis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["quantize", "MODES"]

MODES = ("noise", "ste", "round")


def quantize(x, mode: str, means=None, rng=None):
    """Quantise ``x`` (around ``means`` if given) with one of :data:`MODES`."""
    if mode == "noise":
        if rng is None:
            raise ValueError("mode 'noise' needs a PRNG key")
        return x + jax.random.uniform(rng, x.shape, x.dtype, -0.5, 0.5)
    if mode not in ("ste", "round"):
        raise ValueError(f"unknown quantisation mode {mode!r}; expected one of {MODES}")
    centred = x if means is None else x - means
    q = jnp.round(centred)
    q = q if means is None else q + means
    if mode == "round":
        # zero gradient through the rounding (torch.round semantics); the ``+ means`` part keeps its gradient.
        return jax.lax.stop_gradient(q - (0 if means is None else means)) + (0 if means is None else means)
    return x + jax.lax.stop_gradient(q - x)
