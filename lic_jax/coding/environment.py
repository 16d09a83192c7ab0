"""Where a file was written: what a non-portable file records (docs/FORMAT.md §7).

A float model's coding distribution depends on the jax / jaxlib version, the CPU family and XLA's
code generation, so its files decode exactly only under the encoder's environment. Such a file
records :func:`current_environment` in its header (flags bit 6), and a decoder that rejects its
stream names that environment instead of a bare "bitstream rejected". Portable models (integer
entropy path, ``lic_jax.models.portable``) record nothing: they decode everywhere.
"""

from __future__ import annotations

import platform

__all__ = ["current_environment", "cpu_family"]


def cpu_family() -> str:
    """The machine and the widest vector extension XLA:CPU may use (``x86_64 avx512``, ``x86_64 avx2``,
    ``aarch64``, …): the part of the CPU that changes XLA's generated code."""
    machine = platform.machine() or "cpu"
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    for isa in ("avx512f", "avx2", "avx", "sve", "asimd"):
        if isa in flags:
            return f"{machine} {isa.replace('avx512f', 'avx512')}"
    return machine


def current_environment() -> str:
    """``jax 0.10.2 x86_64 avx2`` (jaxlib's version added when it differs from jax's; printable ASCII,
    ≤ 64 characters: 23 bytes in the header here)."""
    import jax
    import jaxlib

    jl = getattr(jaxlib, "__version__", "?")
    s = f"jax {jax.__version__}{'' if jl == jax.__version__ else ' jaxlib ' + jl} {cpu_family()}"
    return s.encode("ascii", "replace").decode("ascii")[:64]
