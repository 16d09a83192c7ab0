"""Compression models (Flax linen, NHWC, images in [0, 1]) and their registry."""

from .base import bpp, crop_image, pad_amounts, pad_image, total_bits
from .bls2017 import Bls2017
from .bmshj2018 import FactorizedModel, FactorizedPrior, ScaleHyperprior
from .lee2019 import Lee2019
from .mae import LAMBDA_PRESETS, ModulatedBls2017, ModulatedHyperprior, resolve_lmbdas
from .mbt2018 import JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior
from .registry import (LAMBDAS, MODELS, QUALITY_HPARAMS, REGISTRY, VARIABLE_RATE_MODELS, ModelRecord, ModelSpec, get_model,
                       is_variable_rate, lmbda_for, model_names, record, record_for, register, registered,
                       variable_rate_model_names)

__all__ = [
    "Bls2017",
    "FactorizedModel",
    "FactorizedPrior",
    "ScaleHyperprior",
    "MeanScaleHyperprior",
    "JointAutoregressiveHierarchicalPriors",
    "Lee2019",
    "ModulatedBls2017",
    "ModulatedHyperprior",
    "LAMBDA_PRESETS",
    "resolve_lmbdas",
    "VARIABLE_RATE_MODELS",
    "is_variable_rate",
    "variable_rate_model_names",
    "MODELS",
    "REGISTRY",
    "ModelRecord",
    "record",
    "record_for",
    "register",
    "registered",
    "QUALITY_HPARAMS",
    "LAMBDAS",
    "ModelSpec",
    "get_model",
    "lmbda_for",
    "model_names",
    "bpp",
    "total_bits",
    "pad_image",
    "crop_image",
    "pad_amounts",
]
