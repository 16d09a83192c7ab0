"""The deployable model artifact: one directory that ``lic``, ``eval.py`` and users load.

Layout (format version 1)::

    MODEL_DIR/
      config.json     {"format": "lic_jax-model", "version": 1, "model": {name, quality, hparams},
                       "fingerprint": <sha256 of params.msgpack, hex>, "metadata": {...}}
      params.msgpack  flax.serialization.to_bytes(variables)   (portable across JAX versions)
      tables.npz      coding tables (``lic_jax.coding.tables``: quantised CDFs, lengths, offsets), a pure
                      function of the params; written by ``save_artifact`` and, on load, checked
                      against a rebuild from params.msgpack (``verify=True``)

Writes are atomic (a temporary sibling directory renamed into place), so an interrupted export
never leaves a half-written artifact under the final name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import jax
import numpy as np
from flax import serialization

from .models import ModelSpec

__all__ = ["Artifact", "save_artifact", "load_artifact", "fingerprint", "ArtifactError"]

FORMAT = "lic_jax-model"
VERSION = 1


class ArtifactError(ValueError):
    """A model directory is missing, incomplete or inconsistent."""


@dataclasses.dataclass
class Artifact:
    spec: ModelSpec
    variables: Any
    fingerprint: str
    metadata: dict
    tables: dict | None
    path: str | None = None

    @property
    def model(self):
        return self.spec.build()


def _params_bytes(variables) -> bytes:
    return serialization.to_bytes(jax.tree_util.tree_map(np.asarray, variables))


def fingerprint(variables) -> str:
    """SHA-256 (hex) of the serialised variables: identifies the exact weights."""
    return hashlib.sha256(_params_bytes(variables)).hexdigest()


def _build_table_arrays(spec: ModelSpec, variables) -> dict:
    from .coding.tables import build_tables, tables_to_arrays

    return tables_to_arrays(build_tables(spec.build(), variables))


def save_artifact(path, spec: ModelSpec, variables, metadata: dict | None = None, tables: dict | None = None) -> str:
    """Write an artifact directory atomically; returns the fingerprint.

    ``tables``: the coding tables as arrays (``lic_jax.coding.tables.tables_to_arrays``); by
    default they are built from ``variables`` (a pure function of the parameters). Pass
    ``tables=False`` to write no tables.npz (the coder then builds them at load time).
    """
    path = os.fspath(path)
    if tables is None:
        tables = _build_table_arrays(spec, {"params": variables["params"]})
    elif tables is False:
        tables = None
    elif not all(isinstance(v, np.ndarray) for v in tables.values()):
        from .coding.tables import tables_to_arrays

        tables = tables_to_arrays(tables)
    blob = _params_bytes({"params": variables["params"]})
    fp = hashlib.sha256(blob).hexdigest()
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=parent)
    try:
        with open(os.path.join(tmp, "params.msgpack"), "wb") as f:
            f.write(blob)
        if tables is not None:
            np.savez(os.path.join(tmp, "tables.npz"), **tables)
        cfg = {"format": FORMAT, "version": VERSION, "model": spec.to_dict(), "fingerprint": fp,
               "metadata": metadata or {}}
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
        if os.path.isdir(path):
            old = path + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return fp


def load_artifact(path, verify: bool = True) -> Artifact:
    """Load an artifact directory; checks format, version and (if ``verify``) the fingerprint and
    that tables.npz equals the tables rebuilt from the parameters."""
    path = os.fspath(path)
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isdir(path):
        raise ArtifactError(f"{path}: not a model directory")
    if not os.path.exists(cfg_path):
        raise ArtifactError(f"{path}: no config.json (not a lic_jax model directory)")
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{cfg_path}: unreadable ({e})") from None
    if cfg.get("format") != FORMAT or cfg.get("version") != VERSION:
        raise ArtifactError(f"{path}: unsupported model format {cfg.get('format')!r} v{cfg.get('version')!r}")
    spec = ModelSpec.from_dict(cfg["model"])
    try:
        with open(os.path.join(path, "params.msgpack"), "rb") as f:
            blob = f.read()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read params.msgpack ({e})") from None
    fp = hashlib.sha256(blob).hexdigest()
    if verify and fp != cfg.get("fingerprint"):
        raise ArtifactError(f"{path}: params.msgpack does not match the fingerprint in config.json (corrupt?)")
    try:
        variables = serialization.msgpack_restore(blob)
    except Exception as e:  # msgpack raises several types
        raise ArtifactError(f"{path}: corrupt params.msgpack ({type(e).__name__})") from None
    tables = None
    tpath = os.path.join(path, "tables.npz")
    if os.path.exists(tpath):
        try:
            with np.load(tpath, allow_pickle=False) as z:
                tables = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile / ValueError on a damaged file
            raise ArtifactError(f"{path}: corrupt tables.npz ({type(e).__name__})") from None
        if verify:
            from .coding.errors import TableError
            from .coding.tables import tables_equal, tables_from_arrays

            try:
                stored = tables_from_arrays(tables)
                rebuilt = tables_from_arrays(_build_table_arrays(spec, variables))
            except TableError as e:
                raise ArtifactError(f"{path}: {e}") from None
            if not tables_equal(stored, rebuilt):
                raise ArtifactError(f"{path}: tables.npz does not match the tables rebuilt from params.msgpack "
                                    "(stale tables or another lic_jax table version); re-export the model")
    return Artifact(spec, variables, fp, cfg.get("metadata", {}), tables, path)
