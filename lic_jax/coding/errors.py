"""Exceptions raised by the coding layer (all documented in docs/FORMAT.md §6).

Every message is a single line. All of them derive from :class:`LicError` (a ``ValueError``), so
``except LicError`` catches everything that a bad file, a wrong model or a missing backend can
cause; the ``lic`` command turns them into a one-line message and exit status 1 (2 for usage).
"""

from __future__ import annotations

__all__ = [
    "LicError",
    "NotALicFileError",
    "UnsupportedVersionError",
    "TruncatedFileError",
    "CorruptFileError",
    "ModelMismatchError",
    "CoderUnavailableError",
    "UnsupportedImageError",
    "TableError",
    "LimitError",
]


class LicError(ValueError):
    """Base class of every error of the ``.lic`` format and codec."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


class NotALicFileError(LicError):
    """The data does not start with the ``.lic`` magic bytes."""


class UnsupportedVersionError(LicError):
    """The file uses a format version this lic_jax cannot read."""


class TruncatedFileError(LicError):
    """The file is shorter than its header says (interrupted write or download)."""


class CorruptFileError(LicError):
    """Checksum mismatch, invalid header field, trailing bytes, or a bitstream the coder rejects."""


class ModelMismatchError(LicError):
    """The file was encoded with different weights (fingerprint) or another architecture."""


class CoderUnavailableError(LicError, ImportError):
    """The entropy-coder backend recorded in the file (or requested) is not installed."""


class UnsupportedImageError(LicError):
    """An input image that lic refuses to convert (alpha without --drop-alpha, odd modes...)."""


class TableError(LicError):
    """Coding tables cannot be built from the parameters (NaN/inf) or do not match them."""


class LimitError(LicError):
    """A resource limit refuses the file or image before anything large is allocated: more pixels
    than ``max_pixels``, or a stream longer than its symbols can need (docs/FORMAT.md §6)."""
