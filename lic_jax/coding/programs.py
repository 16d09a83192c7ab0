"""Jitted programs of one architecture, compiled once and shared by every ``Codec`` of it.

:func:`cached` is the one compile cache of the coding layer: a program is keyed by the model's
class and hyper-parameters (:func:`model_key`) and a tag, so two codecs of the same
architecture (other weights, other λ) reuse one compilation. :class:`Transforms` holds the
image-side programs (analysis, hyper-analysis, each synthesis method); the latent coders
(``latent_coders/``) keep their own (hyper-synthesis, context steps) under their own tags.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax

__all__ = ["cached", "model_key", "cpu", "cpu_model", "Transforms"]

_CACHE: dict = {}


def model_key(model) -> str:
    """Class + hyper-parameters: what decides the traced programs (not the weights)."""
    fields = [(f.name, getattr(model, f.name)) for f in dataclasses.fields(model) if f.name not in ("parent", "name")]
    return f"{type(model).__module__}.{type(model).__qualname__}{fields!r}"


def cached(model, tag: str, build: Callable):
    """``build()`` once per (architecture, tag); later calls return the same object."""
    key = (model_key(model), tag)
    out = _CACHE.get(key)
    if out is None:
        out = _CACHE[key] = build()
    return out


def cpu():
    return jax.devices("cpu")[0]


def cpu_model(model):
    """The model used on the fixed CPU path: sub-pixel transposed convolutions whatever the backend."""
    if any(f.name == "conv_transpose_impl" for f in dataclasses.fields(model)):
        return model.clone(conv_transpose_impl="subpixel")
    return model


def inference_model(model):
    """``model`` with ``conv_transpose_impl='auto-inference'`` where it is ``'auto'`` (the decoder's
    synthesis: forward only)."""
    if getattr(model, "conv_transpose_impl", None) == "auto":
        return model.clone(conv_transpose_impl="auto-inference")
    return model


class Transforms:
    """analysis (+ hyper-analysis) and the synthesis methods, jitted on the default device.

    ``conditioned``: the transforms take λ (a traced float32 scalar: one compilation for every λ).
    """

    def __init__(self, model, conditioned: bool, hyper: bool):
        m = model
        lam_args = (lambda lam: (lam,)) if conditioned else (lambda lam: ())

        def encode_transform(v, x, lam=None):
            y = m.apply(v, x, *lam_args(lam), method="analysis")
            return y, (m.apply(v, y, method="hyper_analysis") if hyper else None)

        self.encode_transform = jax.jit(encode_transform)
        self._lam_args = lam_args
        self._model = m
        self._synthesis: dict = {}

    def synthesis(self, method: str = "synthesis"):
        """The jitted ``method`` (a decoder of the model record), ``(v, ŷ, λ) → x̂``. A model whose
        transposed convolutions are ``'auto'`` runs them as ``'auto-inference'`` here (forward only:
        the faster form for its last layer on CPU, ``layers/conv.py``)."""
        f = self._synthesis.get(method)
        if f is None:
            m, lam_args = inference_model(self._model), self._lam_args
            f = self._synthesis[method] = jax.jit(lambda v, y, lam=None: m.apply(v, y, *lam_args(lam), method=method))
        return f

    @classmethod
    def of(cls, model, conditioned: bool, hyper: bool) -> "Transforms":
        return cached(model, f"transforms:{conditioned}:{hyper}", lambda: cls(model, conditioned, hyper))
