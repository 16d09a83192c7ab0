"""Where the shipped default model lives. Replacing the default model is a one-file change:
add the new artifact directory under ``lic_jax/assets/models/`` and point ``DEFAULT_MODEL`` at it."""

from __future__ import annotations

import os

DEFAULT_MODEL = "assets/models/default"


def default_model_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), DEFAULT_MODEL)
