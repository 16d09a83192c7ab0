"""Hyperprior structures (Ballé et al. 2018 eq. 9–10; Minnen et al. 2018 §2 mean-scale).

Stream layout: stream 0 codes z, stream 1 codes y.

* z: channel-major with table row = channel — the factorized entropy bottleneck (symbols
  ``round(z − median_c)``), or Lee et al. 2019's zero-mean Gaussian with a learned per-channel
  scale (``z_model='gaussian'``, symbols ``round(z)``);
* ẑ → ``hyper_synthesis`` on the fixed CPU path (sub-pixel model clone, jitted once per
  architecture) → σ → table index, μ (0 for scale-only hyperpriors);
* y: raster order, symbols ``round(y − μ)``, the 64 Gaussian scale tables.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ...entropy_models.gaussian import scale_indexes
from .. import limits
from ..programs import cached, cpu, cpu_model
from ..tables import TAIL_MASS, factorized_table, gaussian_scale_tables, gaussian_table
from .base import LatentCoder, Latents, LatentShapes
from .factorized import code_channels, medians

__all__ = ["HyperpriorCoder", "ZCoding"]


class ZCoding:
    """How a model codes z: its table and centring (shared by the hyperprior and autoregressive coders)."""

    def __init__(self, model, params):
        self.gaussian = getattr(model, "z_model", "factorized") == "gaussian"
        self.medians = None if self.gaussian else medians(params)

    @staticmethod
    def table(model, params):
        if getattr(model, "z_model", "factorized") == "gaussian":
            return gaussian_table(np.abs(np.asarray(params["z_scale"], np.float32)), TAIL_MASS)
        return factorized_table(params["entropy_bottleneck"])

    def run(self, io, table, shape, z=None):
        """(symbols, ẑ) of z."""
        q = code_channels(io, table, shape, z, self.medians)
        qf = q.astype(np.float32)
        return q, (qf if self.gaussian else qf + self.medians)

    def bound(self, table, shape):
        hz, wz, cz = shape
        m = limits.row_min_bits(table)
        return limits.stream_bound("z", hz * wz * cz, float(hz * wz) * float(np.sum(m[:cz])))


class _HyperPrograms:
    def __init__(self, model):
        cm = cpu_model(model)

        def hyper_params(v, z_hat):
            p = cm.apply(v, z_hat, method="hyper_synthesis")
            mu = p.get("means")
            return scale_indexes(p["scales"]), (jnp.zeros_like(p["scales"]) if mu is None else mu)

        self.hyper_params = jax.jit(hyper_params)


class HyperpriorCoder(LatentCoder):
    """Also the base of the autoregressive coder: same tables, z coding and stream bounds."""

    kind = "hyperprior"
    hyper = True
    programs_class = _HyperPrograms

    def __init__(self, model, cpu_vars, tables):
        super().__init__(model, cpu_vars, tables)
        self.z = ZCoding(model, cpu_vars["params"])
        self.programs = cached(model, self.kind, lambda: self.programs_class(model))

    @classmethod
    def build_tables(cls, model, params):
        return {"z": ZCoding.table(model, params), "y": gaussian_scale_tables()}

    def num_streams(self):
        return 2

    def _hyper(self, z_symbols, z_hat):
        """(table indexes, μ) of y from ẑ (float path; the portable coder uses the integer symbols)."""
        with jax.default_device(cpu()):
            idx, mu = self.programs.hyper_params(self.cpu_vars, jax.device_put(z_hat[None], cpu()))
            return np.asarray(idx[0]), np.asarray(mu[0])

    def run(self, io, shapes: LatentShapes, y=None, z=None) -> Latents:
        qz, z_hat = self.z.run(io, self.tables["z"], shapes.z, z)
        idx, mu = self._hyper(qz, z_hat)
        io.open(self.tables["y"])
        q = io.code(idx, y, mu) if io.encoding else io.code(idx)  # μ = 0 for scale-only: round(y − 0)
        io.close()
        return Latents(q, q.astype(np.float32) + mu, qz, z_hat, np.asarray(idx, np.int32))

    def stream_bounds(self, shapes: LatentShapes):
        n = int(np.prod(shapes.y))
        m = limits.row_min_bits(self.tables["y"])  # rows picked by the hyper-decoder: the cheapest row
        return [self.z.bound(self.tables["z"], shapes.z), limits.stream_bound("y", n, float(n) * float(np.min(m)))]
