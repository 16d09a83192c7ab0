"""Compatibility module: the names ``lic_jax.train.trainer`` had before it was split (issue 11).

The code lives in one module per concern:

* :mod:`.setup` — model building and the λ set (``build_model``, ``resolve_lambda_set``, …);
* :mod:`.optim` — optimiser, lr schedule, parameter groups, the aux loss over every entropy bottleneck;
* :mod:`.state` — the typed :class:`~lic_jax.train.state.TrainState` (codec + extra parameter groups);
* :mod:`.steps` — the train step and the eval step (one of each, over a λ set);
* :mod:`.validation` — validation over the λ set;
* :mod:`.export` — artifact export and its metadata;
* :mod:`.loop` — :func:`train_and_evaluate`.
"""

from __future__ import annotations

from .export import export_artifact, export_from_workdir, export_metadata, fit_all_quantiles
from .loop import NonFiniteError, TrainResult, train_and_evaluate
from .optim import aux_loss, make_optimizer, make_schedule, param_labels
from .setup import (LambdaSet, VariableRate, as_lambda_set, build_model, resolve_lambda, resolve_lambda_set,
                    resolve_variable_rate, takes_lambda)
from .state import ParamGroup, TrainState, create_train_state
from .steps import make_eval_step, make_train_step
from .steps import per_image_rd as _per_image_rd  # noqa: F401
from .validation import local_rows as _local_rows  # noqa: F401

__all__ = [
    "NonFiniteError",
    "build_model",
    "resolve_lambda",
    "resolve_lambda_set",
    "LambdaSet",
    "VariableRate",
    "resolve_variable_rate",
    "make_schedule",
    "make_optimizer",
    "param_labels",
    "aux_loss",
    "TrainState",
    "ParamGroup",
    "create_train_state",
    "make_train_step",
    "make_eval_step",
    "fit_all_quantiles",
    "export_artifact",
    "export_metadata",
    "export_from_workdir",
    "train_and_evaluate",
    "TrainResult",
]

# The variable-rate step of earlier versions is the one train step (same arguments).
make_vr_train_step = make_train_step


def make_vr_eval_step(model, config, mesh, crop: int):
    """The eval step of a variable-rate model (earlier signature): ``make_eval_step`` over its λ set."""
    return make_eval_step(model, config, as_lambda_set(tuple(model.lmbdas)), mesh, crop)
