"""Hyperprior + causal context model, coded by wavefronts (Minnen et al. 2018 §2–3; Lee et al. 2019).

Stream layout: stream 0 codes z (as the hyperprior coder), stream 1 codes y wavefront by
wavefront: ``s·h + w = t`` for t = 0, 1, … (``wavefront.py``), positions of a wavefront in order
of increasing h, all M channels of a position together, symbols ``round(y − μ)``.

One jitted CPU step per wavefront (the same function in encoder and decoder, so σ and μ are
bit-identical) writes the previous wavefront's ŷ = symbol + μ into the context state and
evaluates ``gaussian_params_at`` for the current one; one coder call codes all its symbols.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ...entropy_models.gaussian import scale_indexes
from ..programs import cpu, cpu_model
from ..wavefront import wavefront_positions, wavefront_slope
from .base import Latents, LatentShapes
from .hyperprior import HyperpriorCoder

__all__ = ["AutoregressiveCoder"]


class _ARPrograms:
    def __init__(self, model):
        cm = cpu_model(model)
        k = int(model.ctx_kernel)
        ah, aw = (int(a) for a in model.ctx_anchor)
        self.ctx = (k, (ah, aw))

        def hyper_features(v, z_hat):
            hyper = cm.apply(v, z_hat, method="hyper_synthesis")["hyper"]
            return cm.apply(v, hyper, method="ctx_features")

        def ar_step(v, taps, state, feats, pos, t, sym, mu):
            """Write ŷ = sym + μ of wavefront t − 1, then (σ → index, μ) of wavefront t. ``taps``:
            the context kernel's unmasked taps (``context_taps``), computed once per codec: slicing
            them inside the step copied the kernel's taps on every one of the ~141 steps of a Kodak
            image (3.5 MB for mbt2018 q3), about half the step's time (issue 19)."""
            H, W = feats.shape[0], feats.shape[1]
            M = state.shape[-1]
            prev = pos[t - 1]
            y_prev = sym.astype(jnp.float32) + mu
            state = state.at[prev[:, 0] + ah, prev[:, 1] + aw].set(y_prev, mode="drop")
            cur = pos[t]
            hh, ww = cur[:, 0], cur[:, 1]
            patches = jax.vmap(lambda h, w: lax.dynamic_slice(state, (h, w, 0), (k, k, M)))(hh, ww)
            f = feats[jnp.clip(hh, 0, H - 1), jnp.clip(ww, 0, W - 1)]
            sigma, mu_new = cm.apply(v, f, patches, taps, method="gaussian_params_at")
            return state, scale_indexes(sigma), mu_new

        self.hyper_features = jax.jit(hyper_features)
        self.context_taps = jax.jit(lambda v: cm.apply(v, method="context_taps"))
        self.ar_step = jax.jit(ar_step, donate_argnums=(2,))


class AutoregressiveCoder(HyperpriorCoder):
    """The hyperprior coder's tables, z stream and bounds; y coded by wavefronts."""

    kind = "autoregressive"
    programs_class = _ARPrograms

    def __init__(self, model, cpu_vars, tables):
        super().__init__(model, cpu_vars, tables)
        self._plans: dict = {}
        self._taps = None

    def _plan(self, H: int, W: int):
        if (H, W) not in self._plans:
            k, anchor = self.programs.ctx
            pos, counts = wavefront_positions(H, W, wavefront_slope(k, anchor))
            self._plans[(H, W)] = (jax.device_put(pos, cpu()), pos, counts)
        return self._plans[(H, W)]

    def hyper_features(self, z_hat: np.ndarray):
        """ẑ (H'', W'', N) → the context-free features of every y position (CPU device array)."""
        with jax.default_device(cpu()):
            return self.programs.hyper_features(self.cpu_vars, jax.device_put(z_hat[None], cpu()))[0]

    def run(self, io, shapes: LatentShapes, y=None, z=None) -> Latents:
        qz, z_hat = self.z.run(io, self.tables["z"], shapes.z, z)
        feats = self.hyper_features(z_hat)
        with jax.default_device(cpu()):
            io.open(self.tables["y"])
            y_hat, q, idx = self._wavefronts(io, feats, shapes.y, y)
            io.close()
        return Latents(q, np.asarray(y_hat, np.float32), qz, z_hat, idx)

    def _wavefronts(self, io, feats, y_shape, y):
        H, W, M = y_shape
        k, (ah, aw) = self.programs.ctx
        pos_dev, pos, counts = self._plan(H, W)
        K = pos.shape[1]
        step, v = self.programs.ar_step, self.cpu_vars
        if self._taps is None:
            self._taps = self.programs.context_taps(v)
        taps = self._taps
        state = jax.device_put(np.zeros((H + k - 1, W + k - 1, M), np.float32), cpu())
        sym = np.zeros((K, M), np.int32)
        mu = jax.device_put(np.zeros((K, M), np.float32), cpu())
        sym_all = np.zeros((H, W, M), np.int32)
        idx_all = np.zeros((H, W, M), np.int32)
        for t in range(len(counts)):
            state, idx, mu = step(v, taps, state, feats, pos_dev, np.int32(t), sym, mu)
            n = int(counts[t])
            idx_h = np.asarray(idx)[:n]
            hs, ws = pos[t, :n, 0], pos[t, :n, 1]
            if n == 0:
                qq = np.zeros((0, M), np.int32)
            elif io.encoding:
                qq = io.code(idx_h, y[hs, ws], np.asarray(mu)[:n])
            else:
                qq = io.code(idx_h)
            sym_all[hs, ws] = qq
            idx_all[hs, ws] = idx_h
            sym = np.zeros((K, M), np.int32)
            sym[:n] = qq
        state, _, _ = step(v, taps, state, feats, pos_dev, np.int32(len(counts)), sym, mu)
        return np.asarray(state[ah : ah + H, aw : aw + W]), sym_all, idx_all
