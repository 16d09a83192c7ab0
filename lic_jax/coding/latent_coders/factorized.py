"""One latent, one factorized density per channel (Ballé et al. 2017; 2018 App. 6.1).

Stream layout: one stream, channel-major (all positions of channel 0 first), table row = channel,
symbols ``round(y − median_c)`` (CompressAI ``EntropyBottleneck.compress``).
"""

from __future__ import annotations

import numpy as np

from .. import limits
from ..tables import factorized_table
from .base import LatentCoder, Latents, LatentShapes, channel_index, channel_major, from_channel_major

__all__ = ["FactorizedCoder", "code_channels", "medians"]


def medians(params: dict, name: str = "entropy_bottleneck") -> np.ndarray:
    return np.asarray(params[name]["quantiles"], np.float32)[:, 0, 1].copy()


def code_channels(io, table, shape, values=None, center=None) -> np.ndarray:
    """Code one (H, W, C) tensor channel-major with table row = channel; ``center``: per channel
    (C,) or None. Returns the (H, W, C) int32 symbols."""
    idx = channel_index(shape)
    io.open(table)
    if io.encoding:
        c = None if center is None else center[idx]
        q = io.code(idx, channel_major(values), c)
    else:
        q = io.code(idx)
    io.close()
    return from_channel_major(q, shape)


class FactorizedCoder(LatentCoder):
    kind = "factorized"
    hyper = False
    # decoding needs only the stored integer tables: no network decides a distribution
    portable = True

    def __init__(self, model, cpu_vars, tables):
        super().__init__(model, cpu_vars, tables)
        self.medians = medians(cpu_vars["params"])

    @classmethod
    def build_tables(cls, model, params):
        return {"y": factorized_table(params["entropy_bottleneck"])}

    def run(self, io, shapes: LatentShapes, y=None, z=None) -> Latents:
        q = code_channels(io, self.tables["y"], shapes.y, y, self.medians)
        return Latents(q, q.astype(np.float32) + self.medians)

    def stream_bounds(self, shapes: LatentShapes):
        hy, wy, cy = shapes.y
        m = limits.row_min_bits(self.tables["y"])
        return [limits.stream_bound("y", hy * wy * cy, float(hy * wy) * float(np.sum(m[:cy])))]
