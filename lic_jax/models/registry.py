"""A tiny registry: model name + quality (or explicit hyper-parameters) → Flax module + config.

Names, the quality → (N, M) table and the λ table are CompressAI's (``compressai/zoo/image.py``,
``docs/source/zoo.rst``), so ``get_model('mbt2018', 3)`` builds the architecture of CompressAI's
``mbt2018(quality=3)`` and its converted weights load into it.

Variable-rate models (``mae-bls2017``, ``mae-hyperprior``: the modulated autoencoders of seed
001, ``lic_jax.models.mae``) have no quality; ``get_model('mae-hyperprior', N=64, M=96,
lmbdas='compressai')`` — their spec always records the λ set and the modulation activation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .bls2017 import Bls2017
from .bmshj2018 import FactorizedPrior, ScaleHyperprior
from .lee2019 import Lee2019
from .mae import LAMBDA_PRESETS, ModulatedBls2017, ModulatedHyperprior, resolve_lmbdas
from .mbt2018 import JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior

__all__ = ["ModelRecord", "REGISTRY", "record", "record_for", "MODELS", "VARIABLE_RATE_MODELS", "QUALITY_HPARAMS", "LAMBDAS", "LAMBDA_PRESETS", "ModelSpec", "get_model",
           "model_names", "variable_rate_model_names", "is_variable_rate", "lmbda_for"]


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """Everything lic_jax knows about one model family, in one place (issue 11).

    Attributes:
      name: registry name (``get_model(name, …)``, the artifact's spec, the CLI).
      cls: the Flax module class.
      model_id: container id (1 … 255, unique; written in every ``.lic`` header).
      coder: the latent coder (``lic_jax.coding.latent_coders``): 'factorized', 'hyperprior',
        'autoregressive', 'external', or a ``LatentCoder`` subclass for a new entropy structure.
      qualities: quality → hyper-parameters (CompressAI's table); None for models without one.
      lambdas: quality → λ (``LAMBDAS['mse']`` for CompressAI's families); None without qualities.
      variable_rate: the forward pass and the transforms take λ (``mae-*``).
      compressai: the CompressAI zoo architecture whose ``state_dict`` converts into this model
        (``lic_jax.convert``), or None.
      decoders: the model's synthesis methods; the first is the default decoder. The container
        records which one a file asks for (docs/FORMAT.md).
    """

    name: str
    cls: type
    model_id: int
    coder: Any
    qualities: dict | None = None
    lambdas: dict | None = None
    variable_rate: bool = False
    compressai: str | None = None
    decoders: tuple = ("synthesis",)


_SMALL, _LARGE = {"N": 128, "M": 192}, {"N": 192, "M": 320}
QUALITY_HPARAMS: dict[str, dict[int, dict[str, int]]] = {
    "bmshj2018-factorized": {q: (_SMALL if q <= 5 else _LARGE) for q in range(1, 9)},
    "bmshj2018-hyperprior": {q: (_SMALL if q <= 5 else _LARGE) for q in range(1, 9)},
    "mbt2018-mean": {q: (_SMALL if q <= 4 else _LARGE) for q in range(1, 9)},  # CompressAI: large from q5
    "mbt2018": {q: ({"N": 192, "M": 192} if q <= 4 else {"N": 192, "M": 320}) for q in range(1, 9)},
    "bls2017": {q: ({"N": 128} if q <= 5 else {"N": 192}) for q in range(1, 9)},
    "lee2019": {q: {"N": 192, "M": 192} for q in range(1, 9)},
}

# CompressAI's λ per quality: loss = bpp + λ·255²·MSE (images in [0, 1]) or bpp + λ·(1 − MS-SSIM).
LAMBDAS = {
    "mse": {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800},
    "ms-ssim": {1: 2.40, 2: 4.58, 3: 8.73, 4: 16.64, 5: 31.73, 6: 60.50, 7: 115.37, 8: 220.00},
}


def _records():
    mse = LAMBDAS["mse"]
    q = QUALITY_HPARAMS
    return [
        ModelRecord("bmshj2018-factorized", FactorizedPrior, 1, "factorized", q["bmshj2018-factorized"], mse,
                    compressai="bmshj2018-factorized"),
        ModelRecord("bmshj2018-hyperprior", ScaleHyperprior, 2, "hyperprior", q["bmshj2018-hyperprior"], mse,
                    compressai="bmshj2018-hyperprior"),
        ModelRecord("mbt2018-mean", MeanScaleHyperprior, 3, "hyperprior", q["mbt2018-mean"], mse,
                    compressai="mbt2018-mean"),
        ModelRecord("mbt2018", JointAutoregressiveHierarchicalPriors, 4, "autoregressive", q["mbt2018"], mse,
                    compressai="mbt2018"),
        ModelRecord("bls2017", Bls2017, 5, "factorized", q["bls2017"], mse),
        ModelRecord("lee2019", Lee2019, 6, "autoregressive", q["lee2019"], mse),
        ModelRecord("mae-bls2017", ModulatedBls2017, 7, "factorized", variable_rate=True),
        ModelRecord("mae-hyperprior", ModulatedHyperprior, 8, "hyperprior", variable_rate=True),
    ]


REGISTRY: dict[str, ModelRecord] = {r.name: r for r in _records()}
MODELS = {n: r.cls for n, r in REGISTRY.items()}
VARIABLE_RATE_MODELS = {n: r.cls for n, r in REGISTRY.items() if r.variable_rate}


def record(name: str) -> ModelRecord:
    """The record of a registered model name (a clear error for an unknown one)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}") from None


def record_for(model_or_spec) -> ModelRecord:
    """The record of a module instance, a ``ModelSpec`` or a name; unregistered → ValueError."""
    if isinstance(model_or_spec, str):
        return record(model_or_spec)
    if isinstance(model_or_spec, ModelSpec):
        return record(model_or_spec.name)
    for r in REGISTRY.values():
        if type(model_or_spec) is r.cls:
            return r
    raise ValueError(f"{type(model_or_spec).__name__} is not a registered lic_jax model "
                     f"(add a ModelRecord to lic_jax.models.registry)")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What identifies an architecture: registry name, quality (if any) and hyper-parameters."""

    name: str
    quality: int | None
    hparams: dict[str, Any]

    def build(self):
        return MODELS[self.name](**self.hparams)

    def to_dict(self):
        return {"name": self.name, "quality": self.quality, "hparams": dict(self.hparams)}

    @classmethod
    def from_dict(cls, d):
        return cls(d["name"], d.get("quality"), dict(d.get("hparams", {})))


def model_names():
    """The fixed-rate, quality-indexed models (CompressAI's family); see also :func:`variable_rate_model_names`."""
    return sorted(k for k in MODELS if k not in VARIABLE_RATE_MODELS)


def variable_rate_model_names():
    """The variable-rate (λ-conditioned) models: ``mae-bls2017``, ``mae-hyperprior``."""
    return sorted(VARIABLE_RATE_MODELS)


def is_variable_rate(model_or_name) -> bool:
    """True for a variable-rate model (name, ModelSpec or module): its forward pass takes λ."""
    if isinstance(model_or_name, str):
        return model_or_name in VARIABLE_RATE_MODELS
    if isinstance(model_or_name, ModelSpec):
        return model_or_name.name in VARIABLE_RATE_MODELS
    return bool(getattr(model_or_name, "variable_rate", False))


def lmbda_for(quality: int, metric: str = "mse") -> float:
    if metric not in LAMBDAS:
        raise ValueError(f"metric must be one of {sorted(LAMBDAS)}, got {metric!r}")
    if quality not in LAMBDAS[metric]:
        raise ValueError(f"quality must be 1..8, got {quality!r}")
    return LAMBDAS[metric][quality]


def get_model(name: str, quality: int | None = None, **hparams):
    """Return ``(module, spec)``. ``quality`` picks CompressAI's (N, M); ``hparams`` override them."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    base: dict[str, Any] = {}
    if name in VARIABLE_RATE_MODELS:
        if quality is not None:
            raise ValueError(f"{name} is a variable-rate model: it has no quality; set N (M), lmbdas and activation")
        cls = VARIABLE_RATE_MODELS[name]
        # the λ set (it normalises λ), the activation and the λ input always go into the spec / artifact
        hparams = {**hparams, "lmbdas": resolve_lmbdas(hparams.get("lmbdas", cls.lmbdas)),
                   "activation": hparams.get("activation", cls.activation),
                   "lmbda_input": hparams.get("lmbda_input", cls.lmbda_input)}
    if quality is not None:
        if quality not in QUALITY_HPARAMS[name]:
            raise ValueError(f"quality must be 1..8 for {name}, got {quality!r}")
        base.update(QUALITY_HPARAMS[name][quality])
    base.update(hparams)
    spec = ModelSpec(name, quality, base)
    return spec.build(), spec
