"""The portable coders: table indexes and μ from integer networks (issue 13).

:class:`PortableHyperpriorCoder` (kind ``hyperprior-int``): the hyperprior's streams with σ/μ
from the integer hyper-synthesis. :class:`PortableAutoregressiveCoder` (kind
``autoregressive-int``): the autoregressive coder's streams and wavefront order with σ/μ from the
integer h_s, context model and entropy-parameter network of ``mbt2018-int``
(:mod:`lic_jax.models.portable_ar`).


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

import jax
import numpy as np

from ...models.portable import OUT_SHIFT, integer_hyper_synthesis
from ...models.portable_ar import integer_context_model
from ..programs import cpu
from .autoregressive import AutoregressiveCoder
from .base import Latents, LatentShapes
from .hyperprior import HyperpriorCoder

__all__ = ["PortableHyperpriorCoder", "PortableAutoregressiveCoder"]


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
    return jax.tree_util.tree_map(np.asarray, tree)


def _mu_float(mu_int) -> np.ndarray:
    """μ = μ_int · 2**−16 as float32 (exact: |μ_int| < 2**24)."""
    return np.ldexp(np.asarray(mu_int, np.int64).astype(np.float64), -OUT_SHIFT).astype(np.float32)


class PortableAutoregressiveCoder(AutoregressiveCoder):
    """mbt2018-int: the autoregressive coder's streams (stream 0: z, stream 1: y by wavefronts
    ``3h + w = t``) with every distribution from :class:`~lic_jax.models.portable_ar.IntegerContextModel`.

    One jitted integer step per wavefront, the same in encoder and decoder, writes the previous
    wavefront's integer ŷ into an int32 context state and returns the current one's table indexes
    and μ_int; the y symbols are ``round(y − μ)`` with ``μ = μ_int·2**−16``, ŷ = symbol + μ."""

    kind = "autoregressive-int"
    portable = True

    def __init__(self, model, cpu_vars, tables):
        super().__init__(model, cpu_vars, tables)
        self.integer = integer_context_model(model, _to_numpy(cpu_vars["params"]))

    def run(self, io, shapes: LatentShapes, y=None, z=None) -> Latents:
        qz, z_hat = self.z.run(io, self.tables["z"], shapes.z, z)
        with jax.default_device(cpu()):
            feats = self.integer.features(np.asarray(qz)[None])[0]
            io.open(self.tables["y"])
            y_hat, q, idx = self._integer_wavefronts(io, feats, shapes.y, y)
            io.close()
        return Latents(q, y_hat, qz, z_hat, idx)

    def _integer_wavefronts(self, io, feats, y_shape, y):
        H, W, M = y_shape
        k = self.integer.kernel
        pos_dev, pos, counts = self._plan(H, W)
        K = pos.shape[1]
        step = self.integer.step
        state = jax.device_put(np.zeros((H + k - 1, W + k - 1, M), np.int32), cpu())
        sym = np.zeros((K, M), np.int32)
        mu_int = jax.device_put(np.zeros((K, M), np.int32), cpu())
        sym_all = np.zeros((H, W, M), np.int32)
        idx_all = np.zeros((H, W, M), np.int32)
        y_hat = np.zeros((H, W, M), np.float32)
        for t in range(len(counts)):
            state, idx, mu_int = step(state, feats, pos_dev, np.int32(t), sym, mu_int)
            n = int(counts[t])
            idx_h = np.asarray(idx)[:n]
            mu = _mu_float(np.asarray(mu_int)[:n])
            hs, ws = pos[t, :n, 0], pos[t, :n, 1]
            if n == 0:
                qq = np.zeros((0, M), np.int32)
            elif io.encoding:
                qq = io.code(idx_h, y[hs, ws], mu)
            else:
                qq = io.code(idx_h)
            sym_all[hs, ws] = qq
            idx_all[hs, ws] = idx_h
            y_hat[hs, ws] = qq.astype(np.float32) + mu
            sym = np.zeros((K, M), np.int32)
            sym[:n] = qq
        return y_hat, sym_all, idx_all
