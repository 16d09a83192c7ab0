"""Hyperprior + causal *global-attention* context, coded position by position (Akutsu et al. 2020,
issue 20, increment 3; ``lic_jax.models.akutsu2020``, docs/AKUTSU.md "Codec").

The context of akutsu2020 (type-A 5×5 masked convolution, then causal self-attention over the
raster order, and a second causal attention in the mixing body) makes σ_i, μ_i depend on every
latent position before i, so there is no wavefront: positions are coded strictly one after the
other.

Stream layout: stream 0 codes z (the factorized hyper-latent, as the hyperprior coder), stream 1
codes y in raster order (row by row, left to right), all M channels of a position together,
symbols ``round(y − μ)``, the 64 Gaussian scale tables.

One jitted CPU step per position — the same function in encoder and decoder, so σ and μ are
bit-identical on both sides — writes the previous position's ŷ = symbol + μ into the context
state (ŷ zero-padded by 2, the masked convolution's reach), cuts the 5×5 window around the
current position, and evaluates ``Akutsu2020.gaussian_params_step`` with the key/value caches of
both attention layers (slot j holds position j's key and value; slots ≥ i are masked out). One
range-coder call per position codes its M symbols. ŷ = symbol + μ (float32) is what the synthesis
gets.

**Local attention window** (``attention_window`` = r > 0, ambiguity 12 of the model): a query reads
keys within r rows above and r columns either side, so σ_i, μ_i depend only on positions of earlier
wavefronts ``s·h + w < t`` with s = ``Akutsu2020.wavefront_slope()`` = max(3, r + 1). Stream 1 then
codes y wavefront by wavefront exactly as the mbt2018 coder does (``autoregressive.py``: positions
of a wavefront in order of increasing h, all M channels of a position together), one jitted step
and one coder call per wavefront: 3·31 + 48 = 141 steps for a Kodak latent of 32 × 48 instead of
1,536. The keys and values live on the latent grid (``Akutsu2020.attention_grid_cache``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ...entropy_models.gaussian import scale_indexes
from ..programs import cpu, cpu_model
from ..wavefront import wavefront_positions
from .base import Latents, LatentShapes
from .hyperprior import HyperpriorCoder

__all__ = ["AttentionContextCoder", "WINDOW"]

WINDOW = 5  # the context estimator's masked convolution: 5×5, anchor (2, 2)


def _step_params(v):
    """The parameters the step reads (context estimator, mixing body): passing the whole tree on
    every one of the ~1500 calls of a Kodak image would flatten all of G_m, G_s, E, … each time."""
    p = v["params"]
    return {"params": {k: p[k] for k in ("context_estimator", "mixing_body")}}


class _AttentionPrograms:
    def __init__(self, model):
        cm = cpu_model(model)
        r = WINDOW // 2

        def hyper_features(v, z_hat):
            return cm.apply(v, z_hat, method="hyper_synthesis")[0]

        def step(v, state, caches, feats, t, sym, mu):
            """Write ŷ = sym + μ of position t − 1 (nothing at t = 0), then (σ → table index, μ) of
            position t and the caches holding its key and value."""
            H, W, M = feats.shape[0], feats.shape[1], state.shape[-1]
            prev = t - 1
            ph = jnp.where(t > 0, prev // W + r, state.shape[0] + 1)  # out of range at t = 0: dropped
            state = state.at[ph, prev % W + r].set(sym.astype(jnp.float32) + mu, mode="drop")
            h, w = t // W, t % W
            window = lax.dynamic_slice(state, (h, w, 0), (WINDOW, WINDOW, M))[None]
            f = lax.dynamic_slice(feats, (h, w, 0), (1, 1, feats.shape[-1]))[None]
            sigma, mu_new, caches = cm.apply(v, f, window, caches, t, method="gaussian_params_step")
            return state, caches, scale_indexes(sigma[0, 0, 0]), mu_new[0, 0, 0]

        def wave_step(v, state, caches, feats, pos, t, sym, mu):
            """Write ŷ = sym + μ of wavefront t − 1 (row T of ``pos``, all padding, at t = 0), then
            (σ → table index, μ) of wavefront t's positions and the key/value grids holding theirs."""
            H, W, M = feats.shape[0], feats.shape[1], state.shape[-1]
            prev = pos[t - 1]
            state = state.at[prev[:, 0] + r, prev[:, 1] + r].set(sym.astype(jnp.float32) + mu, mode="drop")
            cur = pos[t]
            hh, ww = cur[:, 0], cur[:, 1]
            windows = jax.vmap(lambda h, w: lax.dynamic_slice(state, (h, w, 0), (WINDOW, WINDOW, M)))(hh, ww)
            f = feats[jnp.clip(hh, 0, H - 1), jnp.clip(ww, 0, W - 1)][:, None, None, :]
            sigma, mu_new, caches = cm.apply(v, f, windows, caches, cur, method="gaussian_params_wavefront")
            return state, caches, scale_indexes(sigma), mu_new

        self.hyper_features = jax.jit(hyper_features)
        self.step = jax.jit(step, donate_argnums=(1, 2))
        self.wave_step = jax.jit(wave_step, donate_argnums=(1, 2))
        self.cache = lambda n: cm.attention_cache(n)
        self.grid_cache = lambda H, W: cm.attention_grid_cache(H, W)
        self.window = int(getattr(model, "attention_window", 0) or 0)
        self.slope = model.wavefront_slope() if self.window else None


class AttentionContextCoder(HyperpriorCoder):
    """The hyperprior coder's tables, z stream and bounds; y coded position by position in raster order
    (global attention) or wavefront by wavefront (a local attention window)."""

    kind = "attention-context"
    programs_class = _AttentionPrograms

    def __init__(self, model, cpu_vars, tables):
        super().__init__(model, cpu_vars, tables)
        self._step_vars = _step_params(cpu_vars)

    def hyper_features(self, z_hat: np.ndarray):
        """ẑ (H'', W'', N) → H_d's features at every y position (CPU device array)."""
        with jax.default_device(cpu()):
            return self.programs.hyper_features(self.cpu_vars, jax.device_put(z_hat[None], cpu()))

    def run(self, io, shapes: LatentShapes, y=None, z=None) -> Latents:
        qz, z_hat = self.z.run(io, self.tables["z"], shapes.z, z)
        feats = self.hyper_features(z_hat)
        with jax.default_device(cpu()):
            io.open(self.tables["y"])
            order = self._wavefronts if self.programs.window else self._positions
            q, mu, idx = order(io, feats, shapes.y, y)
            io.close()
        y_hat = q.astype(np.float32) + mu  # the very float32 sums the step wrote into its state
        return Latents(q, y_hat, qz, z_hat, idx)

    def _positions(self, io, feats, y_shape, y):
        H, W, M = y_shape
        if tuple(feats.shape) != (H, W, feats.shape[-1]):
            raise ValueError(f"hyper features {tuple(feats.shape)} do not match the latent {y_shape}")
        r = WINDOW // 2
        step, v = self.programs.step, self._step_vars
        state = jax.device_put(np.zeros((H + 2 * r, W + 2 * r, M), np.float32), cpu())
        caches = jax.device_put(self.programs.cache(H * W), cpu())
        sym = np.zeros(M, np.int32)
        mu = jax.device_put(np.zeros(M, np.float32), cpu())
        q_all = np.zeros((H, W, M), np.int32)
        mu_all = np.zeros((H, W, M), np.float32)
        idx_all = np.zeros((H, W, M), np.int32)
        for t in range(H * W):
            state, caches, idx, mu = step(v, state, caches, feats, np.int32(t), sym, mu)
            h, w = divmod(t, W)
            idx_h, mu_h = np.asarray(idx)[None], np.asarray(mu)
            sym = (io.code(idx_h, y[h, w][None], mu_h[None]) if io.encoding else io.code(idx_h))[0]
            q_all[h, w], mu_all[h, w], idx_all[h, w] = sym, mu_h, idx_h[0]
        return q_all, mu_all, idx_all

    def _wavefronts(self, io, feats, y_shape, y):
        H, W, M = y_shape
        if tuple(feats.shape) != (H, W, feats.shape[-1]):
            raise ValueError(f"hyper features {tuple(feats.shape)} do not match the latent {y_shape}")
        r = WINDOW // 2
        pos, counts = wavefront_positions(H, W, self.programs.slope)
        K = pos.shape[1]
        step, v = self.programs.wave_step, self._step_vars
        pos_dev = jax.device_put(pos, cpu())
        state = jax.device_put(np.zeros((H + 2 * r, W + 2 * r, M), np.float32), cpu())
        caches = jax.device_put(self.programs.grid_cache(H, W), cpu())
        sym = np.zeros((K, M), np.int32)
        mu = jax.device_put(np.zeros((K, M), np.float32), cpu())
        q_all = np.zeros((H, W, M), np.int32)
        mu_all = np.zeros((H, W, M), np.float32)
        idx_all = np.zeros((H, W, M), np.int32)
        for t in range(len(counts)):
            state, caches, idx, mu = step(v, state, caches, feats, pos_dev, np.int32(t), sym, mu)
            n = int(counts[t])
            idx_h, mu_h = np.asarray(idx)[:n], np.asarray(mu)[:n]
            hs, ws = pos[t, :n, 0], pos[t, :n, 1]
            qq = io.code(idx_h, y[hs, ws], mu_h) if io.encoding else io.code(idx_h)
            q_all[hs, ws], mu_all[hs, ws], idx_all[hs, ws] = qq, mu_h, idx_h
            sym = np.zeros((K, M), np.int32)
            sym[:n] = qq
        return q_all, mu_all, idx_all
