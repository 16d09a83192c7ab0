"""Training feedback: JSON-lines log, TensorBoard (tensorboardX) scalars/images, tqdm progress bar.

Only process 0 writes. ``metrics.jsonl`` has one JSON object per line:
``{"step": s, "split": "train"|"val", "time": unix_seconds, <metric>: value, ...}``. On resume
the lines past the restored step are dropped, so the file always describes one trajectory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time

import numpy as np

__all__ = ["MetricWriter", "read_metrics"]

log = logging.getLogger(__name__)


def read_metrics(path: str, split: str | None = None) -> list[dict]:
    """Records of a ``metrics.jsonl`` (optionally one split); later duplicates of a step win."""
    out: dict[tuple, dict] = {}
    if not os.path.exists(path):
        return []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            if split is None or r.get("split") == split:
                out[(r.get("split"), r["step"])] = r
    return [out[k] for k in sorted(out, key=lambda k: (k[1], str(k[0])))]


def _clean(v):
    v = float(v)
    return v if math.isfinite(v) else str(v)


class MetricWriter:
    def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True, progress: bool = True,
                 total_steps: int = 0, initial_step: int = 0):
        self.enabled = enabled
        self.workdir = workdir
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        self.bar = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            except ImportError:
                log.warning("tensorboardX is not installed: no TensorBoard logs")
        if progress:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True,
                                mininterval=1.0, file=sys.stderr, smoothing=0.1)
            except ImportError:
                pass

    def truncate_after(self, step: int):
        """Drop records with a step beyond ``step`` (called when resuming from a checkpoint at ``step``)."""
        if not self.enabled or not os.path.exists(self.path):
            return
        keep = []
        with open(self.path) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if r.get("step", 0) <= step:
                    keep.append(json.dumps(r) + "\n")
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
        os.replace(tmp, self.path)

    def write(self, step: int, split: str, metrics: dict):
        if not self.enabled:
            return
        rec = {"step": int(step), "split": split, "time": round(time.time(), 3)}
        rec.update({k: _clean(v) for k, v in metrics.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                v = float(v)
                if math.isfinite(v):
                    self.tb.add_scalar(f"{split}/{k}", v, step)
        if split == "train" and self.bar is not None:
            post = {k: f"{float(metrics[k]):.4g}" for k in ("loss", "bpp", "psnr") if k in metrics}
            self.bar.set_postfix(post, refresh=False)
        else:
            msg = " ".join(f"{k}={float(v):.5g}" for k, v in metrics.items())
            self.message(f"[{split}] step {step}: {msg}")

    def images(self, step: int, tag: str, images: np.ndarray):
        """NHWC uint8 images to TensorBoard."""
        if self.enabled and self.tb is not None and len(images):
            self.tb.add_images(tag, np.asarray(images), step, dataformats="NHWC")

    def advance(self, n: int = 1):
        if self.bar is not None:
            self.bar.update(n)

    def message(self, msg: str):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def flush(self):
        if self.tb is not None:
            self.tb.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
