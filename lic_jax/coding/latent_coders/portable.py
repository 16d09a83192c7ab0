"""The portable hyperprior coder: table indexes and μ from the integer hyper-synthesis (issue 13).

Same streams, tables and coding order as :class:`~.hyperprior.HyperpriorCoder` (stream 0: z,
stream 1: y); only the step ẑ → (index, μ) differs. It runs
:class:`lic_jax.models.portable.IntegerHyperSynthesis` on the integer z symbols: int32
arithmetic whose partial sums are proven below 2**31 (``lic_jax.layers.integer.check_bounds``),
so the result — and with it every y symbol's distribution — is the same on every jax version,
CPU, GPU and XLA flag set (Ballé, Johnston & Minnen, ICLR 2019, §1–2). The y symbols are
``round(y − μ)`` with the exact float32 ``μ = μ_int · 2**−16``.

Files of these models are *portable* (``lic info`` says so): they decode exactly wherever lic_jax
runs. The synthesis transform stays float, so pixels may differ by a grey level across platforms,
never the decodability (docs/FORMAT.md §7).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...models.portable import integer_hyper_synthesis
from .hyperprior import HyperpriorCoder

__all__ = ["PortableHyperpriorCoder"]


class PortableHyperpriorCoder(HyperpriorCoder):
    kind = "hyperprior-int"
    portable = True

    def __init__(self, model, cpu_vars, tables):
        super().__init__(model, cpu_vars, tables)
        self.integer = integer_hyper_synthesis(model, _to_numpy(cpu_vars["params"]))

    def _hyper(self, z_symbols, z_hat):
        idx, mu = self.integer(np.asarray(z_symbols)[None])
        return idx[0], (np.zeros(idx.shape[1:], np.float32) if mu is None else mu[0])


def _to_numpy(tree):
    if isinstance(tree, Mapping):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree)
