"""A tiny registry: model name + quality (or explicit hyper-parameters) → Flax module + config.

Names, the quality → (N, M) table and the λ table are CompressAI's (``compressai/zoo/image.py``,
``docs/source/zoo.rst``), so ``get_model('mbt2018', 3)`` builds the architecture of CompressAI's
``mbt2018(quality=3)`` and its converted weights load into it.

Variable-rate models (``mae-bls2017``, ``mae-hyperprior``: the modulated autoencoders of seed
001, ``lic_jax.models.mae``) have no quality; ``get_model('mae-hyperprior', N=64, M=96,
lmbdas='compressai')`` — their spec always records the λ set and the modulation activation.

``toderici2017`` (Toderici et al. 2017, seed 003; ``lic_jax.models.toderici2017``) has neither
quality nor λ: ``get_model('toderici2017', cell='gru', mode='one-shot', width=0.25)``; its spec
always records cell, mode, width and iterations, and its record's ``objective`` is
``'iterative-l1'`` (the training loss is the L1 residual over the iterations, not
rate–distortion; ``lic_jax.train.iterative``).

``akutsu2020`` (Akutsu et al. 2020, seed 002; ``lic_jax.models.akutsu2020``) has neither quality
nor λ either: ``get_model('akutsu2020', width=1/16, blocks=1)`` (defaults: the paper's sizes,
width 1, 6 RCABs per residual group); its record's ``objective`` is ``'gan'``
(``lic_jax.train.gan``); its latent coder is ``'attention-context'`` (position by position, raster
order: ``lic_jax.coding.latent_coders.attention``) and its decoders are ``synthesis_main`` (G_m, the
default) and ``synthesis_fused`` (G_s fused with G_m by its mask, eq. 1: ``lic decompress --detail``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any

from .akutsu2020 import Akutsu2020
from .bls2017 import Bls2017
from .bmshj2018 import FactorizedPrior, ScaleHyperprior
from .jiang2017 import ComCNNJpeg
from .lee2019 import Lee2019
from .mae import LAMBDA_PRESETS, ModulatedBls2017, ModulatedHyperprior, resolve_lmbdas
from .mbt2018 import JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior
from .portable import PortableMeanScaleHyperprior, PortableModulatedHyperprior, PortableScaleHyperprior
from .portable_ar import PortableJointAutoregressive
from .toderici2017 import Toderici2017

__all__ = ["OBJECTIVES", "ModelRecord", "REGISTRY", "record", "record_for", "register", "unregister", "registered", "model_id",
           "name_for_id", "MODEL_IDS", "MODEL_NAMES", "MODELS", "VARIABLE_RATE_MODELS", "QUALITY_HPARAMS", "LAMBDAS",
           "LAMBDA_PRESETS", "ModelSpec", "get_model", "model_names", "variable_rate_model_names", "is_variable_rate",
           "lmbda_for"]


OBJECTIVES = ("rd", "iterative-l1", "gan")


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """Everything lic_jax knows about one model family, in one place (issue 11).

    Attributes:
      name: registry name (``get_model(name, …)``, the artifact's spec, the CLI).
      cls: the Flax module class.
      model_id: container id (1 … 255, unique; written in every ``.lic`` header).
      coder: the latent coder (``lic_jax.coding.latent_coders``): 'factorized', 'hyperprior',
        'autoregressive', 'external', 'attention-context', …, or a ``LatentCoder`` subclass for a new
        entropy structure; 'none' registers a model for training only (``Codec`` refuses it).
      qualities: quality → hyper-parameters (CompressAI's table); None for models without one.
      lambdas: quality → λ (``LAMBDAS['mse']`` for CompressAI's families); None without qualities.
      variable_rate: the forward pass and the transforms take λ (``mae-*``).
      compressai: the CompressAI zoo architecture whose ``state_dict`` converts into this model
        (``lic_jax.convert``), or None.
      decoders: the model's synthesis methods; the first is the default decoder. The container
        records which one a file asks for (docs/FORMAT.md).
      portable_of: for a portable model (integer entropy path, ``lic_jax.models.portable``), the
        float model whose parameters it shares (``lic compress --portable`` maps one to the other).
      objective: what training minimises (``lic_jax.train.steps`` dispatches on it): 'rd' (bpp +
        λ·distortion, every model with a λ) or 'iterative-l1' (Toderici 2017: the mean L1 residual
        over the iterations, ``lic_jax.train.iterative``; no λ, no quality) or 'gan' (Akutsu 2020:
        alternating discriminator / generator steps, ``lic_jax.train.gan``; no λ, no quality).
      spec_fields: hyper-parameters always written into the spec (the class default unless
        given), so an artifact names its architecture completely.
      spec_legacy: (field, value) pairs: spec_fields added after artifacts existed and the value
        those artifacts were built with (``ModelSpec.from_dict`` fills it in when a stored spec lacks the field).
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
    portable_of: str | None = None
    objective: str = "rd"
    spec_fields: tuple = ()
    spec_legacy: tuple = ()


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
        # Jiang et al. 2017 (seed 004): ComCNN → standard JPEG payload → RecCNN (docs/COMCNN.md)
        ModelRecord("comcnn-jpeg", ComCNNJpeg, 9, "external"),
        # Toderici et al. 2017 (seed 003): recurrent progressive codec, 32 bits / 16×16 block / iteration
        ModelRecord("toderici2017", Toderici2017, 10, "progressive", decoders=("decode_step",),
                    objective="iterative-l1", spec_fields=("cell", "mode", "width", "iterations")),
        # Akutsu et al. 2020 (seed 002): selective detail decoding, conditional-GAN trained (docs/AKUTSU.md).
        # Coder (issue 20, increment 3): position by position; decoder 1 = G_s fused with G_m (eq. 1).
        ModelRecord("akutsu2020", Akutsu2020, 11, "attention-context", decoders=("synthesis_main", "synthesis_fused"),
                    objective="gan",
                    spec_fields=("width", "blocks", "detail_ca", "decoder_norm", "mean_shift", "latent"),
                    # specs before G_s's local CA, GDN in the decoder bodies, the mean shift (AKUTSU.md
                    # ambiguities 3, 8, 11) and the latent width as a spec field (always the paper's 64 before)
                    spec_legacy=(("detail_ca", "global"), ("decoder_norm", "igdn"), ("mean_shift", False),
                                 ("latent", 64))),
        # portable twins (issue 13): same parameters, integer hyper-synthesis; ids 20+ are portable models
        ModelRecord("bmshj2018-hyperprior-int", PortableScaleHyperprior, 20, "hyperprior-int",
                    q["bmshj2018-hyperprior"], mse, portable_of="bmshj2018-hyperprior"),
        ModelRecord("mbt2018-mean-int", PortableMeanScaleHyperprior, 21, "hyperprior-int", q["mbt2018-mean"], mse,
                    portable_of="mbt2018-mean"),
        ModelRecord("mbt2018-int", PortableJointAutoregressive, 22, "autoregressive-int", q["mbt2018"], mse,
                    portable_of="mbt2018"),
        ModelRecord("mae-hyperprior-int", PortableModulatedHyperprior, 23, "hyperprior-int", variable_rate=True,
                    portable_of="mae-hyperprior"),
    ]


class _Live(Mapping):
    """A read-only mapping recomputed from :data:`REGISTRY` on every access, so that a model added by
    :func:`register` / :func:`registered` is seen everywhere (``MODELS``, ``container.MODEL_IDS``, …)."""

    def __init__(self, fn, doc):
        self._fn = fn
        self.__doc__ = doc

    def __getitem__(self, key):
        return self._fn()[key]

    def __iter__(self):
        return iter(self._fn())

    def __len__(self):
        return len(self._fn())

    def __repr__(self):
        return repr(self._fn())


REGISTRY: dict[str, ModelRecord] = {}
MODELS = _Live(lambda: {n: r.cls for n, r in REGISTRY.items()}, "registry name → module class")
VARIABLE_RATE_MODELS = _Live(lambda: {n: r.cls for n, r in REGISTRY.items() if r.variable_rate},
                             "registry name → module class of the variable-rate models")
MODEL_IDS = _Live(lambda: {n: r.model_id for n, r in REGISTRY.items()}, "registry name → container id")
MODEL_NAMES = _Live(lambda: {r.model_id: n for n, r in REGISTRY.items()}, "container id → registry name")


def _check(rec: ModelRecord):
    if not isinstance(rec, ModelRecord):
        raise TypeError(f"expected a ModelRecord, got {type(rec).__name__}")
    if not isinstance(rec.name, str) or not rec.name:
        raise ValueError(f"a model name must be a non-empty string, got {rec.name!r}")
    if isinstance(rec.model_id, bool) or not isinstance(rec.model_id, int) or not 1 <= rec.model_id <= 255:
        raise ValueError(f"{rec.name}: model_id must be an integer in 1..255 (0 means 'none' in the container), "
                         f"got {rec.model_id!r}")
    if rec.name in REGISTRY:
        raise ValueError(f"model name {rec.name!r} is already registered")
    for other in REGISTRY.values():
        if other.model_id == rec.model_id:
            raise ValueError(f"{rec.name}: model_id {rec.model_id} is already used by {other.name}")
        if other.cls is rec.cls:
            raise ValueError(f"{rec.name}: class {rec.cls.__name__} is already registered as {other.name}")
    if (rec.qualities is None) != (rec.lambdas is None):
        raise ValueError(f"{rec.name}: qualities and lambdas go together (both tables or neither)")
    if rec.qualities is not None and set(rec.qualities) != set(rec.lambdas):
        raise ValueError(f"{rec.name}: qualities {sorted(rec.qualities)} and λ table {sorted(rec.lambdas)} differ")
    if rec.variable_rate and rec.qualities is not None:
        raise ValueError(f"{rec.name}: a variable-rate model has no quality table")
    if not rec.decoders or not all(isinstance(d, str) for d in rec.decoders):
        raise ValueError(f"{rec.name}: decoders must be a non-empty tuple of method names")
    if rec.objective not in OBJECTIVES:
        raise ValueError(f"{rec.name}: objective must be one of {OBJECTIVES}, got {rec.objective!r}")
    if rec.objective != "rd" and (rec.qualities is not None or rec.variable_rate):
        raise ValueError(f"{rec.name}: a model trained for {rec.objective!r} has no λ (no quality table, not "
                         "variable-rate)")


def register(rec: ModelRecord) -> ModelRecord:
    """Add a model to the registry (name, container id and class must be new; id in 1..255)."""
    _check(rec)
    REGISTRY[rec.name] = rec
    return rec


def unregister(name: str) -> ModelRecord:
    """Remove a registered model (for :func:`registered`; the built-in models stay registered)."""
    return REGISTRY.pop(record(name).name)


@contextlib.contextmanager
def registered(rec: ModelRecord):
    """``with registered(ModelRecord(...)):`` — a temporary registration (test-only toy models). The
    name, id and class are checked as :func:`register`; the record is removed on exit, even on error."""
    register(rec)
    try:
        yield rec
    finally:
        if REGISTRY.get(rec.name) is rec:
            del REGISTRY[rec.name]


for _r in _records():
    register(_r)
del _r


def record(name: str) -> ModelRecord:
    """The record of a registered model name (a clear error for an unknown one)."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}") from None


def record_for(model_or_spec) -> ModelRecord:
    """The record of a module instance, a ``ModelSpec`` or a name; an unregistered model is a ValueError
    (never a silent id 0)."""
    if isinstance(model_or_spec, str):
        return record(model_or_spec)
    if isinstance(model_or_spec, ModelSpec):
        return record(model_or_spec.name)
    for r in REGISTRY.values():
        if type(model_or_spec) is r.cls:
            return r
    raise ValueError(f"{type(model_or_spec).__name__} is not a registered lic_jax model "
                     f"(add a ModelRecord to lic_jax.models.registry, or use registry.registered(...) in a test)")


def portable_twin(name: str) -> str:
    """The portable (integer entropy path) model of ``name``: itself if it is portable, its twin if it
    has one (``bmshj2018-hyperprior`` → ``bmshj2018-hyperprior-int``); ValueError naming the models
    that have one otherwise."""
    if record(name).portable_of is not None:
        return name
    for r in REGISTRY.values():
        if r.portable_of == name:
            return r.name
    have = sorted(r.portable_of for r in REGISTRY.values() if r.portable_of)
    raise ValueError(f"{name} has no portable (integer entropy) variant; models with one: {', '.join(have)}")


def model_id(name: str) -> int:
    """The container id of a registered model name (ValueError for an unknown one, never 0)."""
    return record(name).model_id


def name_for_id(model_id: int) -> str | None:
    """The registered name of a container id, or None (0 = 'no model' and unknown ids)."""
    for r in REGISTRY.values():
        if r.model_id == model_id:
            return r.name
    return None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What identifies an architecture: registry name, quality (if any) and hyper-parameters."""

    name: str
    quality: int | None
    hparams: dict[str, Any]

    def build(self):
        # JSON gives lists; module fields are hashable tuples (int_shifts, eb_filters, …)
        hp = {k: tuple(v) if isinstance(v, list) else v for k, v in self.hparams.items()}
        return record(self.name).cls(**hp)

    def to_dict(self):
        return {"name": self.name, "quality": self.quality, "hparams": dict(self.hparams)}

    @classmethod
    def from_dict(cls, d):
        """A stored spec; a spec_field added to a record later takes the value it had before the
        change when the stored spec lacks it (the record's ``spec_legacy``)."""
        hparams = dict(d.get("hparams", {}))
        rec = REGISTRY.get(d["name"])
        for k, v in (rec.spec_legacy if rec is not None else ()):
            hparams.setdefault(k, v)
        return cls(d["name"], d.get("quality"), hparams)


def model_names():
    """The fixed-rate, quality-indexed models (CompressAI's family); see also :func:`variable_rate_model_names`."""
    return sorted(n for n, r in REGISTRY.items() if not r.variable_rate)


def variable_rate_model_names():
    """The variable-rate (λ-conditioned) models: ``mae-bls2017``, ``mae-hyperprior``."""
    return sorted(n for n, r in REGISTRY.items() if r.variable_rate)


def is_variable_rate(model_or_name) -> bool:
    """True for a variable-rate model (name, ModelSpec or module): its forward pass takes λ."""
    if isinstance(model_or_name, (str, ModelSpec)):
        name = model_or_name if isinstance(model_or_name, str) else model_or_name.name
        return name in REGISTRY and REGISTRY[name].variable_rate
    return bool(getattr(model_or_name, "variable_rate", False))


def lmbda_for(quality: int, metric: str = "mse", model: str | None = None) -> float:
    """λ of a quality: CompressAI's table for ``metric``; with ``model``, that model's record's table
    (``ModelRecord.lambdas``, the MSE one) for ``metric='mse'``."""
    if metric not in LAMBDAS:
        raise ValueError(f"metric must be one of {sorted(LAMBDAS)}, got {metric!r}")
    table = LAMBDAS[metric]
    if model is not None:
        rec = record(model)
        if rec.lambdas is None:
            raise ValueError(f"{model} has no quality → λ table (variable-rate model: give λ directly)")
        if metric == "mse":
            table = rec.lambdas
    if quality not in table:
        raise ValueError(f"quality must be {min(table)}..{max(table)}, got {quality!r}")
    return table[quality]


def get_model(name: str, quality: int | None = None, **hparams):
    """Return ``(module, spec)``. ``quality`` picks the record's (CompressAI's) (N, M); ``hparams`` override them."""
    rec = record(name)
    base: dict[str, Any] = {}
    if rec.variable_rate:
        if quality is not None:
            raise ValueError(f"{name} is a variable-rate model: it has no quality; set N (M), lmbdas and activation")
        cls = rec.cls
        # the λ set (it normalises λ), the activation and the λ input always go into the spec / artifact
        hparams = {**hparams, "lmbdas": resolve_lmbdas(hparams.get("lmbdas", cls.lmbdas)),
                   "activation": hparams.get("activation", cls.activation),
                   "lmbda_input": hparams.get("lmbda_input", cls.lmbda_input)}
    if quality is not None:
        if rec.qualities is None:
            raise ValueError(f"{name} has no quality table; give its hyper-parameters")
        if quality not in rec.qualities:
            raise ValueError(f"quality must be {min(rec.qualities)}..{max(rec.qualities)} for {name}, got {quality!r}")
        base.update(rec.qualities[quality])
    for f in rec.spec_fields:
        base[f] = getattr(rec.cls, f)
    base.update(hparams)
    spec = ModelSpec(name, quality, base)
    model = spec.build()
    check = getattr(model, "check_hparams", None)
    if callable(check):
        check()
    return model, spec
