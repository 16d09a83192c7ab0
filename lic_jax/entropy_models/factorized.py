"""Per-channel factorized density: the "entropy bottleneck" of Ballé et al. 2018, Appendix 6.1.

The cumulative c(x) = sigmoid(f_K ∘ … ∘ f_1(x)) of each channel is a small monotone network:
f_k(x) = softplus(H_k) x + b_k, with x + tanh(a_k) ⊙ tanh(x) after every hidden layer. The
probability of a quantisation bin is c(x + ½) − c(x − ½), computed on the side of the median
where it does not cancel (sign trick), floored at ``likelihood_bound``.

Parameters are named and shaped as CompressAI's ``EntropyBottleneck`` (``matrix_i``
(C, f_{i+1}, f_i), ``bias_i`` and ``factor_i`` (C, f_{i+1}, 1), ``quantiles`` (C, 1, 3)), so its
weights load unchanged. ``quantiles`` hold [lower tail, median, upper tail] per channel: they
are fitted either by the auxiliary loss (:meth:`EntropyBottleneck.aux_loss`, CompressAI's
practice) or computed exactly from the density by :func:`fit_quantiles` at export. Nothing
about coding is stored as hidden state: coding tables are a pure function of these parameters
(``lic_jax.coding.tables``).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..layers.bounds import lower_bound
from .quantization import quantize

__all__ = ["EntropyBottleneck", "logits_cumulative", "fit_quantiles"]


def logits_cumulative(params, x, stop_gradient: bool = False):
    """Logit of the cumulative at ``x`` (shape (C, 1, N)) for an EB parameter dict."""
    n_layers = sum(1 for k in params if k.startswith("matrix_"))
    sg = jax.lax.stop_gradient if stop_gradient else (lambda a: a)
    logits = x
    for i in range(n_layers):
        logits = jnp.matmul(jax.nn.softplus(sg(params[f"matrix_{i}"])), logits) + sg(params[f"bias_{i}"])
        if i < n_layers - 1:
            logits = logits + jnp.tanh(sg(params[f"factor_{i}"])) * jnp.tanh(logits)
    return logits


def _bin_probability(params, values, stable: bool = True):
    lower = logits_cumulative(params, values - 0.5)
    upper = logits_cumulative(params, values + 0.5)
    if stable:
        # evaluate in the tail where the difference does not cancel: flip the sign above the median
        sign = -jnp.sign(lower + upper)
        sign = jnp.where(sign == 0, 1.0, sign)
        return jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower)), lower, upper
    return jax.nn.sigmoid(upper) - jax.nn.sigmoid(lower), lower, upper


class EntropyBottleneck(nn.Module):
    """Factorized prior over the channels of an NHWC tensor (Ballé 2018, App. 6.1, eqs. 7–9).

    Attributes:
      channels: number of channels C.
      filters: hidden widths (CompressAI (3,3,3,3); Ballé 2018 / TFC v1 (3,3,3); TFC v2 (3,3)).
      init_scale: initial scale of the density (10 in all three libraries).
      tail_mass: probability mass outside [lower, upper] quantiles (coding range).
      likelihood_bound: floor of the returned likelihoods.
      stable_likelihood: compute c(x+½) − c(x−½) with the sign trick (TFC). ``False`` uses the
        plain difference exactly as CompressAI does.
    """

    channels: int
    filters: Sequence[int] = (3, 3, 3, 3)
    init_scale: float = 10.0
    tail_mass: float = 1e-9
    likelihood_bound: float = 1e-9
    stable_likelihood: bool = True

    def setup(self):
        filters = (1,) + tuple(self.filters) + (1,)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        c = self.channels
        p = {}
        for i in range(len(self.filters) + 1):
            init = float(np.log(np.expm1(1.0 / scale / filters[i + 1])))
            p[f"matrix_{i}"] = self.param(
                f"matrix_{i}", lambda _k, s, v=init: jnp.full(s, v, jnp.float32), (c, filters[i + 1], filters[i])
            )
            p[f"bias_{i}"] = self.param(
                f"bias_{i}", lambda k, s: jax.random.uniform(k, s, jnp.float32, -0.5, 0.5), (c, filters[i + 1], 1)
            )
            if i < len(self.filters):
                p[f"factor_{i}"] = self.param(f"factor_{i}", nn.initializers.zeros, (c, filters[i + 1], 1))
        self._density = p
        self.quantiles = self.param(
            "quantiles",
            lambda _k, s: jnp.tile(jnp.array([-self.init_scale, 0.0, self.init_scale], jnp.float32), (s[0], 1, 1)),
            (c, 1, 3),
        )

    # -- pieces ---------------------------------------------------------------------------
    def density_params(self):
        return dict(self._density)

    def medians(self):
        return self.quantiles[:, 0, 1]

    def aux_loss(self):
        """Σ |logit c(q) − t| with t = (−log(2/τ − 1), 0, log(2/τ − 1)); trains only ``quantiles``."""
        target = np.log(2.0 / self.tail_mass - 1.0)
        target = jnp.array([-target, 0.0, target], jnp.float32)
        logits = logits_cumulative(self._density, self.quantiles, stop_gradient=True)
        return jnp.sum(jnp.abs(logits - target))

    def likelihood(self, values):
        """Likelihood of values of shape (..., C) (any real values; integers ⇒ bin probabilities)."""
        shape = values.shape
        v = jnp.moveaxis(values, -1, 0).reshape(self.channels, 1, -1)
        lik, _, _ = _bin_probability(self._density, v.astype(jnp.float32), self.stable_likelihood)
        if self.likelihood_bound > 0:
            lik = lower_bound(lik, self.likelihood_bound)
        lik = lik.reshape((self.channels,) + shape[:-1])
        return jnp.moveaxis(lik, 0, -1)

    def __call__(self, y, mode: str = "round", rng=None):
        """Return (ŷ, likelihood(ŷ)); ``mode`` as :func:`lic_jax.entropy_models.quantize`."""
        if mode == "noise" and rng is None:
            rng = self.make_rng("noise")
        y_hat = quantize(y, mode, self.medians(), rng)
        return y_hat, self.likelihood(y_hat)


def fit_quantiles(eb_params, tail_mass: float = 1e-9, search_radius: float = 1e5, iters: int = 60):
    """Exact quantiles of an EB density by bisection (CompressAI ``update(update_quantiles=True)``).

    Returns an array shaped like ``eb_params['quantiles']``. Pure function of the parameters.
    """
    q = eb_params["quantiles"]
    c = q.shape[0]
    target = np.log(2.0 / tail_mass - 1.0)
    targets = jnp.array([-target, 0.0, target], jnp.float32)

    def f(v):
        return logits_cumulative(eb_params, v, stop_gradient=True)

    lo = jnp.full((c, 1, 3), -search_radius, jnp.float32)
    hi = jnp.full((c, 1, 3), search_radius, jnp.float32)

    def body(_, lh):
        lo, hi = lh
        mid = 0.5 * (lo + hi)
        below = f(mid) <= targets
        return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return 0.5 * (lo + hi)
