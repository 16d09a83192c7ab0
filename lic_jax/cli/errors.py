"""Errors and warnings of the ``lic`` command: one line each on stderr."""

from __future__ import annotations

import sys


class CliError(Exception):
    """A one-line user-facing error."""


def _warn(msg: str):
    print(f"lic: warning: {msg}", file=sys.stderr)


def _message(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, (FileNotFoundError, IsADirectoryError, PermissionError)) and getattr(e, "filename", None):
        msg = f"{e.filename}: {e.strerror}"
    return msg
