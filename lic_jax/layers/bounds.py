"""Bound operators and the non-negative re-parameterisation shared by GDN and entropy models.

``lower_bound`` is ``max(x, bound)`` with the gradient rule of TFC's ``lower_bound`` /
CompressAI's ``LowerBound``: the incoming gradient is passed through where ``x >= bound``
or where it would push ``x`` upwards (``g < 0`` for gradient descent); elsewhere it is zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["lower_bound", "nonneg_init", "nonneg_value", "REPARAM_OFFSET"]

REPARAM_OFFSET = 2.0**-18


@jax.custom_vjp
def lower_bound(x, bound):
    """``max(x, bound)`` whose gradient lets ``x`` climb back above ``bound``."""
    return jnp.maximum(x, jnp.asarray(bound, x.dtype))


def _lb_fwd(x, bound):
    return lower_bound(x, bound), (x, bound)


def _lb_bwd(res, g):
    x, bound = res
    pass_through = (x >= bound) | (g < 0)
    return (jnp.where(pass_through, g, jnp.zeros_like(g)), jnp.zeros_like(jnp.asarray(bound)))


lower_bound.defvjp(_lb_fwd, _lb_bwd)


def nonneg_init(value, minimum: float = 0.0, offset: float = REPARAM_OFFSET):
    """Stored parameter for a non-negative quantity ``value`` (``sqrt(max(v + p, p))``, p = offset²)."""
    del minimum
    pedestal = offset**2
    return jnp.sqrt(jnp.maximum(value + pedestal, pedestal))


def nonneg_value(param, minimum: float = 0.0, offset: float = REPARAM_OFFSET):
    """Effective non-negative value of a stored parameter: ``lower_bound(p, sqrt(min + o²))² − o²``."""
    pedestal = offset**2
    bound = (minimum + pedestal) ** 0.5
    return lower_bound(param, bound) ** 2 - pedestal
