"""Where the shared data lives: ``$LIC_JAX_SHARED`` if set, else ``<repo>/../shared``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["shared_dir", "shared_data"]


def shared_dir() -> Path:
    """``$LIC_JAX_SHARED``, else the ``shared`` folder next to the repository (a source checkout)."""
    env = os.environ.get("LIC_JAX_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"


def shared_data(*parts: str) -> str:
    """``<shared>/data/<parts…>`` as a string (config values are strings)."""
    return str(shared_dir().joinpath("data", *parts))
