"""Process-wide JAX settings of the entry points (``train.py``, ``eval.py``), never of library code.

:func:`configure_jax` is called explicitly by the entry points (and may be by scripts that want
the same behaviour); importing or calling library functions changes no global JAX setting.
"""

from __future__ import annotations

__all__ = ["configure_jax"]


def configure_jax() -> None:
    """``jax_threefry_partitionable``: the same random bits however an array is sharded, and the same
    draws on jax 0.4.x as on ≥ 0.5 (where it is the default); a run's noise does not depend on
    the device count. (shared/docs/DEPENDENCIES.md §3.)"""
    import jax

    jax.config.update("jax_threefry_partitionable", True)
