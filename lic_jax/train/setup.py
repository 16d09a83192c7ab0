"""Model and λ set of a training config: the module to train, its spec, and the λ set it trains on.

Conditioning is one path (issue 11): every run trains on a :class:`LambdaSet`. A fixed-rate model
is a variable-rate one with a one-λ set (``resolve_lambda_set``); only a model whose registry
record says ``variable_rate`` (:func:`takes_lambda`) receives λ as an argument of its forward
pass, and only its metrics carry the ``@λ`` suffix.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from ..models import MODELS, get_model, is_variable_rate, lmbda_for, resolve_lmbdas

__all__ = ["objective", "build_model", "LambdaSet", "VariableRate", "resolve_variable_rate", "resolve_lambda",
           "resolve_lambda_set", "as_lambda_set", "takes_lambda", "to_dict"]

_DTYPES = {"float32": None, "fp32": None, "bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16}


def to_dict(cfg):
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def takes_lambda(model) -> bool:
    """Whether the model's forward pass takes λ (its registry record is ``variable_rate``)."""
    from ..models.registry import record_for

    try:
        return bool(record_for(model).variable_rate)
    except ValueError:  # an unregistered module: ask it
        return bool(is_variable_rate(model))


def objective(model_or_name) -> str:
    """What training minimises: the registry record's ``objective`` ('rd' for an unregistered
    module; ``'iterative-l1'`` for Toderici 2017, which has no λ). Accepts a module, a spec, a name."""
    from ..models.registry import record_for

    try:
        return record_for(model_or_name).objective
    except ValueError:
        return "rd"


def _vr_config(config) -> dict:
    vr = config.get("variable_rate", None)
    return to_dict(vr) if vr is not None else {}


def build_model(config):
    """(training module, ModelSpec). The spec is what gets exported; the training module may run in bf16.

    Variable-rate models get their λ set (``variable_rate.lmbdas``, which must agree with
    ``model_hparams.lmbdas`` if both are given) in the spec, so the artifact records it."""
    hparams = to_dict(config.get("model_hparams", {}) or {})
    quality = config.get("quality")
    if objective(config.model) != "rd" and quality:
        raise ValueError(f"{config.model} has no quality (it trains for {objective(config.model)!r}, without λ): "
                         "set --config.quality=0")
    if is_variable_rate(config.model):
        if quality:
            raise ValueError(f"{config.model} is a variable-rate model and has no quality: set --config.quality=0 "
                             f"and the λ set with --config.variable_rate.lmbdas")
        vr_set = _vr_config(config).get("lmbdas", "")
        if vr_set:
            lm = resolve_lmbdas(vr_set)
            if hparams.get("lmbdas") and resolve_lmbdas(hparams["lmbdas"]) != lm:
                raise ValueError(f"variable_rate.lmbdas {lm} and model_hparams.lmbdas "
                                 f"{resolve_lmbdas(hparams['lmbdas'])} disagree (set one of them)")
            hparams["lmbdas"] = lm
    name = config.model
    if config.get("integer_entropy", False):
        from .portable import portable_model_name

        name = portable_model_name(name)  # quantisation-aware training of the integer entropy path
    model, spec = get_model(name, quality if quality else None, **hparams)
    dtype_name = str(config.get("dtype", "float32"))
    if dtype_name not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype_name!r}")
    if _DTYPES[dtype_name] is not None:
        model = MODELS[spec.name](**{**spec.hparams, "dtype": _DTYPES[dtype_name]})
    return model, spec


@dataclasses.dataclass(frozen=True)
class LambdaSet:
    """The λ set of a run, its weights w_λ and the mode ('all' | 'sample'); one λ for a fixed-rate model."""

    lmbdas: tuple
    weights: tuple = None
    mode: str = "all"

    def __post_init__(self):
        object.__setattr__(self, "lmbdas", tuple(float(v) for v in self.lmbdas))
        w = (1.0,) * len(self.lmbdas) if self.weights is None else tuple(float(v) for v in self.weights)
        object.__setattr__(self, "weights", w)

    @property
    def probs(self) -> tuple:
        tot = float(sum(self.weights))
        return tuple(w / tot for w in self.weights)

    def tag(self, k: int) -> str:
        """Metric-name suffix of the k-th λ: '@0.0130'."""
        return f"@{self.lmbdas[k]:.4g}"

    def to_dict(self):
        return {"lmbdas": list(self.lmbdas), "weights": list(self.weights), "mode": self.mode}


VariableRate = LambdaSet  # the name before conditioning became one path


def as_lambda_set(lmbdas) -> LambdaSet:
    """A LambdaSet from a LambdaSet, one λ (a number) or a sequence of λ (equal weights, mode 'all')."""
    if isinstance(lmbdas, LambdaSet):
        return lmbdas
    if isinstance(lmbdas, (int, float)) or getattr(lmbdas, "ndim", None) == 0:
        return LambdaSet((float(lmbdas),))
    return LambdaSet(tuple(lmbdas))


def resolve_variable_rate(config, spec=None) -> LambdaSet | None:
    """The variable-rate set-up of a config (None for fixed-rate models). The λ set is the model's
    (``spec.hparams['lmbdas']``, i.e. ``variable_rate.lmbdas`` or the registry default)."""
    if not is_variable_rate(config.model):
        return None
    if spec is None:
        spec = build_model(config)[1]
    lmbdas = tuple(float(v) for v in spec.hparams["lmbdas"])
    vr = _vr_config(config)
    mode = vr.get("mode", "all") or "all"
    if mode not in ("all", "sample"):
        raise ValueError(f"variable_rate.mode must be 'all' or 'sample', got {mode!r}")
    w = vr.get("weights", "") or ""
    if isinstance(w, str):
        try:
            weights = tuple(float(v) for v in w.split(",") if v.strip()) if w.strip() else (1.0,) * len(lmbdas)
        except ValueError:
            raise ValueError(f"variable_rate.weights must be comma-separated numbers, got {w!r}") from None
    else:
        weights = tuple(float(v) for v in w)
    if len(weights) != len(lmbdas):
        raise ValueError(f"variable_rate.weights has {len(weights)} values for {len(lmbdas)} λ {lmbdas}")
    if any(not (v >= 0 and math.isfinite(v)) for v in weights) or sum(weights) <= 0:
        raise ValueError(f"variable_rate.weights must be non-negative and not all zero, got {weights}")
    return LambdaSet(lmbdas, weights, mode)


def resolve_lambda(config) -> float:
    if is_variable_rate(config.model):
        raise ValueError(f"{config.model} is a variable-rate model: use resolve_variable_rate (a λ set)")
    if config.get("lmbda") is not None:
        return float(config.lmbda)
    if not config.get("quality"):
        raise ValueError("set either config.lmbda or config.quality")
    return lmbda_for(int(config.quality), config.metric)


def resolve_lambda_set(config, spec=None) -> LambdaSet:
    """The λ set every run trains on: the variable-rate set, or the one λ of a fixed-rate model."""
    vr = resolve_variable_rate(config, spec)
    return vr if vr is not None else LambdaSet((resolve_lambda(config),))
