"""The ``lic`` program's persistent XLA compilation cache (issue 19, ``docs/SPEED.md``).

A codec's jitted encoder and decoder compile in seconds on a CPU (kodim01 with the default model:
≈ 2 s of a 6.0 s ``lic decompress``, 2 s more being imports), and XLA compiles them again in every
new process. When
``lic`` runs as a program, JAX's persistent cache keeps the compiled executables on disk, keyed by
the program's HLO, the shapes, the JAX/XLA versions and the backend, so a later run on an image of
the same size loads them instead. A cached executable is the compiled program itself: its floats,
and so the decoded pixels, are those of a fresh compile (``tests/test_cli.py::test_xla_cache``).

Where: ``$LIC_JAX_XLA_CACHE``; else ``xla/`` in the weight cache (``lic_jax.zoo.cache_dir``:
``$LIC_JAX_CACHE``, ``$XDG_CACHE_HOME/lic_jax`` or ``~/.cache/lic_jax``). ``LIC_JAX_XLA_CACHE=off``
(or ``0``, ``no``, ``false``, empty) turns it off; a ``JAX_COMPILATION_CACHE_DIR`` of the user's own
wins. At most :data:`MAX_BYTES` (least recently used entries go first). A directory that cannot be
created or written leaves the cache off, and an entry JAX cannot read (a corrupt file) is compiled
again, both without a message: they only cost time (delete the directory to clear it).
"""

from __future__ import annotations

import os

MAX_BYTES = 256 << 20  # ≈ 180 image sizes of kodim01's (1.4 MB of executables each, default model)
MIN_COMPILE_S = 0.0  # every jitted program: which ones a run stores must not depend on timing
_OFF = ("", "0", "off", "no", "false")


def cache_path() -> str | None:
    """The directory the cache would use, or None when it is off (see the module docstring)."""
    where = os.environ.get("LIC_JAX_XLA_CACHE")
    if where is not None and where.strip().lower() in _OFF:
        return None
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None  # JAX reads the user's own setting itself
    if not where:
        from ..zoo import cache_dir

        where = os.path.join(cache_dir(), "xla")
    return os.path.abspath(where)


def enable() -> str | None:
    """Turn the persistent cache on for this process; returns its directory, or None."""
    where = cache_path()
    if where is None:
        return None
    try:
        os.makedirs(where, exist_ok=True)
    except OSError:
        return None
    if not os.access(where, os.W_OK | os.X_OK):
        return None
    import warnings

    import jax

    # an unreadable or unwritable entry only costs a compile; JAX says so in a multi-line warning
    warnings.filterwarnings("ignore", message=r"Error (reading|writing) persistent compilation cache entry")
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return where
