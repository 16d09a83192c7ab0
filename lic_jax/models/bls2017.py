"""Ballé, Laparra, Simoncelli: "End-to-end optimized image compression", ICLR 2017.

Three analysis stages (9×9/4, 5×5/2, 5×5/2, each conv + GDN) and the mirrored synthesis
(IGDN + 5×5↑2, IGDN + 5×5↑2, IGDN + 9×9↑4), latent stride 16, N channels throughout, and a
per-channel factorized density on ŷ (Ballé et al. 2017, §2 and Fig. 1; ``docs/SYSTEMS_NOTES.md``).

Choices where the sources disagree (all configurable):
* ``last_gdn=True``: GDN after the third analysis stage and IGDN before the first synthesis
  stage, as the paper's Fig. 1 / the MAE code; TFC's ``models/bls2017.py`` drops both
  (``last_gdn=False``).
* The paper's piecewise-linear density is replaced by the deep factorized density of Ballé
  2018 App. 6.1 with its (3, 3, 3) hidden widths (TFC v1), since the original density was never
  released in reproducible form (TFC issue #135).
* N = 128 (paper, greyscale) by default; the paper's RGB models and MAE use 192.
"""

from __future__ import annotations

from typing import Any

from ..entropy_models import EntropyBottleneck
from ..layers import GDN, Conv, ConvTranspose
from .bmshj2018 import FactorizedModel

__all__ = ["Bls2017"]


class Bls2017(FactorizedModel):
    """bls2017 — Ballé, Laparra, Simoncelli ICLR 2017, §2 (transforms, Fig. 1) and eq. 7 (R + λD with noise proxy)."""

    N: int = 128
    last_gdn: bool = True
    eb_filters: tuple = (3, 3, 3)
    simplified_gdn: bool = False
    conv_transpose_impl: str = "auto"
    dtype: Any = None

    downsampling = 16

    def setup(self):
        d, N, impl = self.dtype, self.N, self.conv_transpose_impl
        g = lambda inv=False: GDN(inverse=inv, simplified=self.simplified_gdn, dtype=d)  # noqa: E731
        g_a = [Conv(N, 9, 4, dtype=d), g(), Conv(N, 5, 2, dtype=d), g(), Conv(N, 5, 2, dtype=d)]
        g_s = [ConvTranspose(N, 5, 2, impl=impl, dtype=d), g(True), ConvTranspose(N, 5, 2, impl=impl, dtype=d),
               g(True), ConvTranspose(3, 9, 4, impl=impl, dtype=d)]
        if self.last_gdn:
            g_a = g_a + [g()]
            g_s = [g(True)] + g_s
        self.g_a = g_a
        self.g_s = g_s
        self.entropy_bottleneck = EntropyBottleneck(N, filters=self.eb_filters)
