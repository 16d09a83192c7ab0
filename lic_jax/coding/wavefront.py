"""Wavefront schedule for autoregressive (context-model) coding.

A model with a causal context window of size k anchored at (a_h, a_w) (``ctx_kernel``,
``ctx_anchor``: the parameters at latent (h, w) read ŷ rows h − a_h … h − a_h + k − 1 and columns
w − a_w … w − a_w + k − 1, of which only rows above h and, in row h, columns left of w are
unmasked) can evaluate every position with ``s·h + w = t`` at once once all positions with a
smaller ``s·h + w`` are known, where the slope ``s`` must exceed the largest column offset
``k − 1 − a_w`` read in the row above: ``s = k − a_w``.

* mbt2018 (5×5 masked conv, anchor (2, 2)): s = 3 — wavefronts 3h + w = t;
* lee2019 (4×4 window rows h−3…h, columns w−2…w+1, anchor (3, 2)): s = 2 — 2h + w = t.

:func:`check_slope` verifies the schedule numerically against ``gaussian_params_at``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["wavefront_slope", "wavefront_positions", "num_wavefronts", "SENTINEL"]

SENTINEL = 1 << 20  # row/column used for padding entries (dropped by scatters)


def wavefront_slope(kernel: int, anchor) -> int:
    ah, aw = anchor
    if ah == 0:
        return 1  # only the current row is read (left of w)
    return max(1, kernel - aw)


def num_wavefronts(H: int, W: int, slope: int) -> int:
    return slope * (H - 1) + (W - 1) + 1


def wavefront_positions(H: int, W: int, slope: int):
    """(pos (T + 1, K, 2) int32, counts (T,) int32): the positions of wavefront t in order of
    increasing h, padded to K = max count with :data:`SENTINEL`; row T is all padding (used as
    "no previous wavefront" and "nothing to read")."""
    T = num_wavefronts(H, W, slope)
    hs_all, ws_all, counts = [], [], np.zeros(T, np.int32)
    for t in range(T):
        h_lo = max(0, -(-(t - (W - 1)) // slope))
        h_hi = min(H - 1, t // slope)
        hs = np.arange(h_lo, h_hi + 1)
        ws = t - slope * hs
        hs_all.append(hs)
        ws_all.append(ws)
        counts[t] = hs.size
    K = int(counts.max())
    pos = np.full((T + 1, K, 2), SENTINEL, np.int32)
    for t in range(T):
        pos[t, : counts[t], 0] = hs_all[t]
        pos[t, : counts[t], 1] = ws_all[t]
    return pos, counts
