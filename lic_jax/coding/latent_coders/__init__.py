"""Latent coders: one object per entropy structure (issue 11; docs/ARCHITECTURE.md).

=================  ==========================================  =======================
name               structure                                    models
=================  ==========================================  =======================
``factorized``     one latent, per-channel factorized density   bmshj2018-factorized, bls2017, mae-bls2017
``hyperprior``     z (factorized / Gaussian) → σ (μ) of y       bmshj2018-hyperprior, mbt2018-mean, mae-hyperprior
``autoregressive`` hyperprior + causal context, wavefronts      mbt2018, lee2019
``external``       an opaque standard stream (JPEG / PNG)       JPEG-payload models (seed 004)
``hyperprior-int`` hyperprior, σ/μ from an integer h_s          bmshj2018-hyperprior-int, mbt2018-mean-int, mae-hyperprior-int
``autoregressive-  autoregressive, σ/μ from integer h_s,        mbt2018-int
int``              context model and entropy parameters
``progressive``    ±1 codes of a recurrent codec, one segment   toderici2017
                   per iteration, learned binary context model
``attention-       hyperprior + causal global-attention         akutsu2020
context``          context, position by position (raster)
=================  ==========================================  =======================

A model's record (``lic_jax.models.registry.ModelRecord.coder``) names its coder, or gives a
:class:`LatentCoder` subclass for a new structure. The ``progressive`` coder codes ±1 bits, one
segment per iteration, with its own binary range-coder IO (its codec is
``lic_jax.coding.progressive.ProgressiveCodec``; docs/PROGRESSIVE.md).
"""

from __future__ import annotations

from .attention import AttentionContextCoder
from .autoregressive import AutoregressiveCoder
from .base import DecoderIO, EncoderIO, LatentCoder, Latents, LatentShapes, SymbolIO
from .external import ExternalCoder
from .factorized import FactorizedCoder
from .hyperprior import HyperpriorCoder
from .portable import PortableAutoregressiveCoder, PortableHyperpriorCoder
from .progressive import ProgressiveCoder

__all__ = ["CODERS", "coder_class", "LatentCoder", "Latents", "LatentShapes", "SymbolIO", "EncoderIO", "DecoderIO",
           "FactorizedCoder", "HyperpriorCoder", "AutoregressiveCoder", "ExternalCoder", "PortableHyperpriorCoder",
           "PortableAutoregressiveCoder", "ProgressiveCoder", "AttentionContextCoder"]

CODERS = {c.kind: c for c in (FactorizedCoder, HyperpriorCoder, AutoregressiveCoder, ExternalCoder,
                              PortableHyperpriorCoder, PortableAutoregressiveCoder, ProgressiveCoder,
                              AttentionContextCoder)}


def coder_class(model_or_spec) -> type:
    """The LatentCoder class a registered model declares (its record's ``coder``)."""
    from ...models.registry import record_for

    rec = record_for(model_or_spec)
    c = rec.coder
    if c == "none":  # a record registered for training only (none today; akutsu2020 was, until issue 20)
        raise ValueError(f"{rec.name} cannot write or read .lic files yet: it has no latent coder "
                         f"(it trains through train.py; its codec is future work)")
    if isinstance(c, type) and issubclass(c, LatentCoder):
        return c
    try:
        return CODERS[c]
    except KeyError:
        raise ValueError(f"unknown latent coder {c!r}; available: {', '.join(sorted(CODERS))}") from None
