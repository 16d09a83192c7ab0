"""Orbax checkpoints for training: periodic (async), keep-N + best-by-validation, verified, resumable.

Layout under the work directory::

    checkpoints/<step>/            the last ``keep`` periodic checkpoints (orbax ``CheckpointManager``)
        state/ meta/               train state (params, optimizer state, step) and a JSON record
        lic_manifest.json          size + CRC-32 of every file, written once the save has finished
    best/<step>/                   the checkpoint with the best validation RD loss so far (keep 1)
    corrupt_checkpoints/<step>-…   checkpoints found damaged at restore time (moved aside, not deleted)

* **Atomic**: orbax writes every checkpoint into a temporary directory and renames it when it
  is complete; an interrupted save never appears under a step name.
* **Async**: the device→host copy happens in ``save``; the files are written in the background
  while training continues (``async_save=True``).
* **Verified**: after a save has finished, ``lic_manifest.json`` records every file's size and
  CRC-32. At restore, the newest checkpoint whose manifest matches and which orbax restores
  without error is used; a damaged or half-written one is reported with a warning, moved to
  ``corrupt_checkpoints/`` and the previous one is tried.
* **Train state**: a :class:`~lic_jax.train.state.TrainState` is stored as its checkpoint tree
  (``{'step', 'params', 'opt_state'}`` [+ ``'extra'``], the layout of earlier versions) and
  restored as a TrainState; restoring a state with extra parameter groups from a checkpoint
  written without them keeps the target's groups.
* The orbax form used is the ``args``-based API (``ocp.args.StandardSave`` / ``Composite``;
  orbax ≥ 0.11.23: the ``.venv`` stack and the GPU box). orbax 0.4.x (the TFC environment)
  lacks it: importing works there, constructing a :class:`Checkpointer` raises a clear error.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import warnings
import zlib

import jax

from . import parallel

__all__ = ["Checkpointer", "CheckpointCorruptWarning", "write_manifest", "verify_manifest", "MANIFEST"]

log = logging.getLogger(__name__)

MANIFEST = "lic_manifest.json"
_TMP_MARK = "orbax-checkpoint-tmp"


class CheckpointCorruptWarning(UserWarning):
    """A checkpoint directory is damaged or incomplete and is skipped."""


def _crc32(path: str, chunk: int = 1 << 22) -> int:
    c = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return c
            c = zlib.crc32(b, c)


def _files(step_dir: str):
    for root, _dirs, files in os.walk(step_dir):
        for name in files:
            p = os.path.join(root, name)
            rel = os.path.relpath(p, step_dir)
            if rel != MANIFEST:
                yield rel, p


def write_manifest(step_dir: str) -> None:
    """Record size and CRC-32 of every file in a finished checkpoint (atomically)."""
    entries = {rel: [os.path.getsize(p), _crc32(p)] for rel, p in sorted(_files(step_dir))}
    tmp = os.path.join(step_dir, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"version": 1, "files": entries}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(step_dir, MANIFEST))


def verify_manifest(step_dir: str) -> str | None:
    """``None`` if the checkpoint matches its manifest (or has none); else what is wrong."""
    path = os.path.join(step_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            entries = json.load(f)["files"]
    except (OSError, ValueError, KeyError) as e:
        return f"unreadable manifest ({e})"
    for rel, (size, crc) in entries.items():
        p = os.path.join(step_dir, rel)
        if not os.path.exists(p):
            return f"missing file {rel}"
        if os.path.getsize(p) != size:
            return f"file {rel} has {os.path.getsize(p)} bytes, expected {size}"
        if _crc32(p) != crc:
            return f"file {rel} fails its CRC-32 check"
    return None


def _ocp():
    import orbax.checkpoint as ocp

    import dataclasses

    fields = {f.name for f in dataclasses.fields(ocp.CheckpointManagerOptions)}
    if not hasattr(ocp, "args") or not hasattr(ocp.args, "StandardSave") or "enable_async_checkpointing" not in fields:
        raise RuntimeError(
            f"orbax-checkpoint {getattr(ocp, '__version__', '?')} lacks the args-based CheckpointManager API "
            "(needs orbax-checkpoint >= 0.11.23); training checkpoints are not supported in this environment")
    return ocp


class _Manager:
    """One orbax CheckpointManager directory plus manifests and corruption handling."""

    def __init__(self, directory: str, max_to_keep: int | None, async_save: bool, quarantine_dir: str):
        self.ocp = _ocp()
        self.dir = os.path.abspath(directory)
        self.quarantine_dir = quarantine_dir
        self.async_save = async_save
        self.max_to_keep = max_to_keep
        self._pending: list[int] = []
        self._open()

    def _open(self):
        ocp = self.ocp
        opts = ocp.CheckpointManagerOptions(max_to_keep=self.max_to_keep, create=True,
                                            enable_async_checkpointing=self.async_save)
        self.mgr = ocp.CheckpointManager(self.dir, options=opts)

    def step_dir(self, step: int) -> str:
        return os.path.join(self.dir, str(step))

    def all_steps(self):
        return sorted(self.mgr.all_steps())

    def _finish_pending(self):
        self.mgr.wait_until_finished()
        if jax.process_index() == 0:
            for s in self._pending:
                if os.path.isdir(self.step_dir(s)):
                    write_manifest(self.step_dir(s))
        parallel.sync("lic_manifest")
        self._pending = []

    def save(self, step: int, state, meta: dict):
        ocp = self.ocp
        self._finish_pending()
        if step in self.mgr.all_steps():
            return False
        self.mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)), force=True)
        self._pending.append(step)
        if not self.async_save:
            self._finish_pending()
        return True

    def wait(self):
        self._finish_pending()

    def close(self):
        self._finish_pending()
        self.mgr.close()

    def _half_written(self):
        """Entries that look like unfinished saves (temporary dirs, step dirs orbax does not list)."""
        if not os.path.isdir(self.dir):
            return []
        listed = {str(s) for s in self.mgr.all_steps()}
        out = []
        for name in sorted(os.listdir(self.dir)):
            p = os.path.join(self.dir, name)
            if not os.path.isdir(p):
                continue
            if _TMP_MARK in name or (re.fullmatch(r"\d+", name) and name not in listed):
                out.append(name)
        return out

    def _quarantine(self, names, reasons):
        if jax.process_index() == 0 and names:
            os.makedirs(self.quarantine_dir, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for name in names:
                src = os.path.join(self.dir, name)
                if os.path.exists(src):
                    dst = os.path.join(self.quarantine_dir, f"{os.path.basename(self.dir)}-{name}-{stamp}")
                    shutil.move(src, dst)
                    log.warning("moved damaged checkpoint %s to %s (%s)", src, dst, reasons.get(name, ""))
        parallel.sync("lic_quarantine")
        if names:
            self.mgr.close()
            self._open()

    def restore_latest(self, target, max_step: int | None = None, adapt=None):
        """(step, state, meta) of the newest intact checkpoint, or None. Damaged ones are skipped.

        ``adapt(step_dir, target) → target`` may fit the restore target to what a checkpoint holds."""
        ocp = self.ocp
        bad, reasons = [], {}
        for name in self._half_written():
            msg = f"checkpoint directory {os.path.join(self.dir, name)} is incomplete (half-written save); skipping it"
            warnings.warn(msg, CheckpointCorruptWarning, stacklevel=2)
            log.warning(msg)
            bad.append(name)
            reasons[name] = "half-written"
        result = None
        for step in sorted(self.mgr.all_steps(), reverse=True):
            if max_step is not None and step > max_step:
                continue
            reason = verify_manifest(self.step_dir(step))
            if reason is None:
                try:
                    tgt = adapt(self.step_dir(step), target) if adapt is not None else target
                    r = self.mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(tgt),
                                                                        meta=ocp.args.JsonRestore()))
                    result = (step, r["state"], dict(r["meta"] or {}))
                except Exception as e:  # orbax/tensorstore raise many types for damaged data
                    reason = f"restore failed: {type(e).__name__}: {str(e)[:300]}"
            if result is not None:
                break
            msg = (f"checkpoint {self.step_dir(step)} is corrupt ({reason}); skipping it and falling back to the "
                   "previous checkpoint")
            warnings.warn(msg, CheckpointCorruptWarning, stacklevel=2)
            log.warning(msg)
            bad.append(str(step))
            reasons[str(step)] = reason
        self._quarantine(bad, reasons)
        return result

    def read_meta(self, step: int) -> dict:
        ocp = self.ocp
        r = self.mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(r["meta"] or {})


class Checkpointer:
    """Periodic keep-N checkpoints plus a best-by-validation checkpoint under ``workdir``.

    ``save(step, state, meta)``; ``save_best(step, state, value, meta)`` (keeps it if ``value``
    — lower is better — beats the best so far); ``restore(target)`` → ``(step, state, meta)`` or
    ``None`` (newest intact checkpoint); ``restore_best(target)``; ``close()``.
    """

    def __init__(self, workdir: str, keep: int = 3, keep_best: bool = True, async_save: bool = True):
        workdir = os.path.abspath(workdir)
        q = os.path.join(workdir, "corrupt_checkpoints")
        self.latest = _Manager(os.path.join(workdir, "checkpoints"), keep, async_save, q)
        self.best = _Manager(os.path.join(workdir, "best"), 1, async_save, q) if keep_best else None
        self.best_value: float | None = None
        self.best_step: int | None = None
        if self.best is not None:
            for step in sorted(self.best.all_steps(), reverse=True):
                if verify_manifest(self.best.step_dir(step)) is None:
                    try:
                        meta = self.best.read_meta(step)
                        self.best_value, self.best_step = float(meta["best_value"]), step
                        break
                    except Exception as e:
                        log.warning("cannot read best-checkpoint record %s: %s", self.best.step_dir(step), e)

    def save(self, step: int, state, meta: dict | None = None) -> bool:
        return self.latest.save(step, _to_tree(state), dict(meta or {}, step=int(step)))

    def save_best(self, step: int, state, value: float, meta: dict | None = None) -> bool:
        if self.best is None or not (value == value):  # NaN never becomes the best
            return False
        if self.best_value is not None and value >= self.best_value:
            return False
        self.best_value, self.best_step = float(value), int(step)
        return self.best.save(step, _to_tree(state), dict(meta or {}, step=int(step), best_value=float(value)))

    def latest_step(self):
        steps = self.latest.all_steps()
        return steps[-1] if steps else None

    def restore(self, target, max_step: int | None = None):
        return _restore(self.latest, target, max_step)

    def restore_best(self, target):
        return None if self.best is None else _restore(self.best, target)

    def wait(self):
        self.latest.wait()
        if self.best is not None:
            self.best.wait()

    def close(self):
        self.latest.close()
        if self.best is not None:
            self.best.close()


def _to_tree(state):
    from .state import TrainState

    return state.to_checkpoint() if isinstance(state, TrainState) else state


def saved_top_keys(step_dir: str):
    """The top-level keys of the state saved in a checkpoint directory (None if unknown)."""
    import ast

    try:
        with open(os.path.join(step_dir, "state", "_METADATA")) as f:
            tree = json.load(f)["tree_metadata"]
        return {ast.literal_eval(k)[0] for k in tree}
    except Exception:
        return None


def _restore(manager: _Manager, target, max_step: int | None = None):
    """Restore into a TrainState (via its checkpoint tree) or into a plain pytree."""
    from .state import TrainState

    if not isinstance(target, TrainState):
        return manager.restore_latest(target, max_step)

    def adapt(step_dir, tree):
        keys = saved_top_keys(step_dir)
        if "extra" in tree and keys is not None and "extra" not in keys:  # written without extra groups
            return {k: v for k, v in tree.items() if k != "extra"}
        return tree

    r = manager.restore_latest(target.to_checkpoint(), max_step, adapt=adapt)
    if r is None:
        return None
    step, tree, meta = r
    return step, TrainState.from_checkpoint(tree, like=target), meta
