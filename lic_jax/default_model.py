"""Where the shipped default model lives. Replacing the default model is a one-file change:
add the new artifact directory under ``lic_jax/assets/models/`` and point ``DEFAULT_MODEL`` at it."""

from __future__ import annotations

import os

DEFAULT_MODEL = "assets/models/default"
# the first default (bmshj2018-hyperprior-int q4, 2026-11), shipped on so that its files still decode
FIRST_DEFAULT_MODEL = "assets/models/bmshj2018-hyperprior-q4"


def default_model_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), DEFAULT_MODEL)


def first_default_model_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), FIRST_DEFAULT_MODEL)
