"""Training pairs (JPEG-decoded patch, original patch) for ARCNN with real JPEG in the input pipeline.

Recipe (SYSTEMS.md §9–§10; ARCNN ICCV 2015 §4.1: Y channel, 32² sub-images; Jiang 2017: 40×40
patches, 8-fold augmentation):

1. Images of any folder (default ``shared/data/train``) are loaded once, as Y′ (BT.601,
   Y′ = 0.299 R + 0.587 G + 0.114 B, rounded to uint8 — the luma a JPEG decoder hands back) or RGB.
2. For every patch a **source crop** of ``crop`` × ``crop`` px (default 64, a multiple of 8) is
   taken at a position aligned to the image's 8×8 grid, transformed by one of the 8 dihedral
   augmentations (rot90 × flip; on a multiple-of-8 crop they map block boundaries onto block
   boundaries), and **JPEG-encoded as a whole** with Pillow at the training QF.
3. The ``patch`` × ``patch`` (default 40) training patch is then cut from the decoded crop and the
   clean crop at a random offset — so the patch holds real block boundaries at every phase of the
   8-px grid, as a 40×40 window of a real JPEG would, and the codec never sees the patch's own
   border as an image border (a 40×40 JPEG would put 5 blocks exactly on the patch grid and
   pad the border).

Batches are made by a ``ThreadPoolExecutor`` (Pillow's JPEG codec releases the GIL) up to
``prefetch`` batches ahead; batch ``i`` is a pure function of (seed, i) — its own
``numpy.random.Generator`` — so the stream is identical whatever the thread timing, and resuming
at step ``i`` replays exactly the batches an uninterrupted run would have seen.
:attr:`PatchPipeline.wait_s` accumulates the time the consumer blocks waiting for a batch.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import os
import time

import numpy as np

from .jpeg import SUBSAMPLING, jpeg_roundtrip

__all__ = ["IMAGE_EXTS", "load_folder", "to_luma", "augment", "make_batch", "PatchPipeline"]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")


def to_luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y′ of a uint8 RGB (or grey) image, rounded to uint8 (H, W)."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        return a.astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        return a[..., 0].astype(np.uint8)
    y = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def load_folder(folder: str, colour: str = "y", min_side: int = 64, limit: int | None = None) -> list[np.ndarray]:
    """Every image of ``folder`` (sorted) as uint8 (H, W) Y′ (``colour='y'``) or (H, W, 3) RGB."""
    from PIL import Image

    if colour not in ("y", "rgb"):
        raise ValueError(f"colour must be 'y' or 'rgb', got {colour!r}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder not found: {folder}")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTS))
    out = []
    for n in names[:limit] if limit else names:
        with Image.open(os.path.join(folder, n)) as im:
            a = np.asarray(im.convert("RGB"))
        a = to_luma(a) if colour == "y" else np.ascontiguousarray(a)
        if min(a.shape[:2]) >= min_side:
            out.append(a)
    if not out:
        raise ValueError(f"no image with both sides >= {min_side} px in {folder}")
    return out


def augment(a: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) of the 8 dihedral transforms: rot90 by k % 4, then a left-right flip if k >= 4."""
    a = np.rot90(a, k % 4, axes=(0, 1))
    if k >= 4:
        a = a[:, ::-1]
    return np.ascontiguousarray(a)


def make_batch(images, rng: np.random.Generator, batch: int, qf: int, patch: int = 40, crop: int = 64,
               subsampling: str = "4:4:4") -> tuple[np.ndarray, np.ndarray]:
    """One batch: (JPEG-decoded patches, clean patches), float32 (batch, patch, patch, c) in [0, 1]."""
    if crop % 8 or crop < patch:
        raise ValueError(f"crop must be a multiple of 8 and >= patch, got crop={crop}, patch={patch}")
    xs, ys = [], []
    for _ in range(batch):
        img = images[int(rng.integers(len(images)))]
        h, w = img.shape[:2]
        by = int(rng.integers((h - crop) // 8 + 1)) * 8
        bx = int(rng.integers((w - crop) // 8 + 1)) * 8
        c = augment(img[by:by + crop, bx:bx + crop], int(rng.integers(8)))
        d, _ = jpeg_roundtrip(c, qf, subsampling)
        oy, ox = (int(v) for v in rng.integers(crop - patch + 1, size=2))
        xs.append(d[oy:oy + patch, ox:ox + patch])
        ys.append(c[oy:oy + patch, ox:ox + patch])
    x = np.stack(xs).astype(np.float32) / 255.0
    y = np.stack(ys).astype(np.float32) / 255.0
    if x.ndim == 3:
        x, y = x[..., None], y[..., None]
    return x, y


class PatchPipeline:
    """Batches ``start, start+1, …`` made ahead in worker threads; ``next()`` returns
    (step, jpeg_batch, clean_batch). ``wait_s``: total seconds ``next()`` blocked."""

    def __init__(self, images, qf: int, batch: int = 32, patch: int = 40, crop: int = 64, seed: int = 0,
                 start: int = 0, workers: int = 2, prefetch: int = 4, subsampling: str = "4:4:4"):
        if subsampling not in SUBSAMPLING:
            raise ValueError(f"subsampling must be one of {', '.join(SUBSAMPLING)}")
        self.images, self.qf, self.batch, self.patch, self.crop = images, qf, batch, patch, crop
        self.seed, self.subsampling = seed, subsampling
        self.next_submit = self.next_get = start
        self.prefetch = max(1, prefetch)
        self.pool = cf.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="arcnn-data")
        self.pending: collections.deque = collections.deque()
        self.wait_s = 0.0
        self._fill()

    def _job(self, i: int):
        rng = np.random.default_rng([self.seed, i])
        return make_batch(self.images, rng, self.batch, self.qf, self.patch, self.crop, self.subsampling)

    def _fill(self):
        while len(self.pending) < self.prefetch:
            self.pending.append((self.next_submit, self.pool.submit(self._job, self.next_submit)))
            self.next_submit += 1

    def next(self):
        i, fut = self.pending.popleft()
        t = time.perf_counter()
        x, y = fut.result()
        self.wait_s += time.perf_counter() - t
        self._fill()
        self.next_get = i + 1
        return i, x, y

    def close(self):
        for _, f in self.pending:
            f.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
