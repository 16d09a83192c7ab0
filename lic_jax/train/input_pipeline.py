"""Input pipeline for RD training: image folders / globs and tensorflow-datasets sources.

Design (what makes runs reproducible, resumable and independent of the device layout):

* A *source* is a random-access sequence of uint8 RGB images (``len`` and ``[i]`` → (H, W, 3)):
  :class:`FolderSource` (PIL + numpy; a folder, a glob, or a comma-separated list of them) or
  :class:`TfdsSource` (``tfds.data_source`` — array_record datasets, no TensorFlow needed).
* The **global** batch of step ``s`` is a pure function of ``(seed, s)``: example slot ``k`` of
  step ``s`` is global example number ``g = s·B + k``; epoch ``g // n`` has its own permutation of
  the ``n`` images (seeded by ``(seed, epoch)``) and the crop offset / flip of the slot are drawn
  from ``np.random.default_rng((seed, s, k))``. Nothing depends on the number of processes or
  devices, so 1 × 8 devices and 2 processes × 4 devices see the same global batch, and a
  restart at step ``s`` continues exactly where the interrupted run was.
* **Per-host sharding**: process ``p`` of ``P`` builds (loads, decodes, crops) only slots
  ``[p·B/P, (p+1)·B/P)`` of every global batch — the rows it feeds to its local devices.
* **Prefetch**: a small thread pool builds the next ``prefetch`` batches ahead of the training
  loop (PIL decoding and numpy slicing release the GIL).

Batches are uint8 NHWC arrays; the train step converts to float32 in [0, 1] on the device.
"""

from __future__ import annotations

import collections
import concurrent.futures
import glob
import os
import threading
import time
from typing import Iterator, Sequence

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "list_images",
    "FolderSource",
    "TfdsSource",
    "make_source",
    "random_crop_flip",
    "random_scaled_crop_flip",
    "parse_scale",
    "center_crop",
    "TrainBatches",
    "eval_batches",
    "to_rgb_uint8",
    "WaitMeter",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def list_images(spec: str | Sequence[str]) -> list[str]:
    """Image files named by a folder (searched recursively), a glob, a file, or a comma-separated list."""
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
    else:
        parts = list(spec)
    files: list[str] = []
    for part in parts:
        part = os.path.expanduser(part)
        if os.path.isdir(part):
            found = glob.glob(os.path.join(part, "**", "*"), recursive=True)
        elif any(c in part for c in "*?["):
            found = glob.glob(part, recursive=True)
        elif os.path.isfile(part):
            found = [part]
        else:
            raise FileNotFoundError(f"no such image folder, file or glob match: {part!r}")
        files.extend(sorted(f for f in found if os.path.isfile(f) and f.lower().endswith(IMAGE_EXTENSIONS)))
    if not files:
        raise FileNotFoundError(f"no images found for {spec!r} (extensions {', '.join(IMAGE_EXTENSIONS)})")
    return files


def to_rgb_uint8(a) -> np.ndarray:
    """(H, W, 3) uint8 from grey (H, W) / (H, W, 1), RGBA, or 16-bit arrays."""
    a = np.asarray(a)
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an image array (H, W[, C]), got shape {a.shape}")
    return a


class FolderSource:
    """Images from files, decoded with PIL. ``cache=True`` keeps decoded images in memory.
    ``mask_dir``: each image comes with its user mask (``lic_jax.train.labels``) as a 4th uint8
    channel (0 / 255), cropped, scaled and flipped with the pixels (GAN training's t_a, issue 20)."""

    def __init__(self, spec, cache: bool = False, mask_dir: str | None = None):
        self.files = list_images(spec)
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self.name = spec if isinstance(spec, str) else ",".join(spec)
        self.mask_dir = mask_dir or None
        if self.mask_dir is not None:
            # each image's mask: <mask_dir>/<its path relative to the folder of the spec that
            # listed it>.png (lic_jax.train.labels.mask_path); files named directly: <stem>.png
            parts = [q for q in (spec.split(",") if isinstance(spec, str) else spec) if os.path.isdir(q)]
            self._roots = [next((q for q in parts if os.path.abspath(f).startswith(os.path.abspath(q) + os.sep)),
                                os.path.dirname(f)) for f in self.files]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        if self.cache and i in self._cache:
            return self._cache[i]
        from PIL import Image

        with Image.open(self.files[i]) as im:
            if im.mode not in ("RGB", "L", "RGBA", "I;16"):
                im = im.convert("RGB")
            a = to_rgb_uint8(np.asarray(im))
        if self.mask_dir is not None:  # RGB + the importance mask as a 4th channel (0 / 255)
            from .labels import mask_path, user_mask

            m = user_mask(mask_path(self.files[i], self._roots[i], self.mask_dir), a.shape)
            a = np.concatenate([a, (m.astype(np.uint8) * 255)[:, :, None]], axis=-1)
        if self.cache:
            self._cache[i] = a
        return a


class TfdsSource:
    """A split of a tensorflow-datasets dataset read with ``tfds.data_source`` (random access).

    Needs the dataset prepared in the **array_record** format under ``data_dir`` (TFDS' default
    file format, TFRecord, is not random-access). Without network access nothing is downloaded
    (``download=False``) unless ``manual_dir`` is given: then the builder prepares the dataset
    from the files there (manual-download datasets), writing array_record.
    """

    def __init__(self, name: str, split: str = "train", data_dir: str | None = None, image_key: str = "image",
                 manual_dir: str | None = None, cache: bool = False):
        import tensorflow_datasets as tfds

        kwargs = {}
        if manual_dir:
            kwargs = dict(
                download=True,
                builder_kwargs={"file_format": "array_record"},
                download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=manual_dir)},
            )
        else:
            kwargs = dict(download=False)
        self.ds = tfds.data_source(name, split=split, data_dir=data_dir or None, **kwargs)
        self.image_key = image_key
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self.name = f"tfds:{name}:{split}"

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i: int) -> np.ndarray:
        if self.cache and i in self._cache:
            return self._cache[i]
        ex = self.ds[int(i)]
        a = to_rgb_uint8(ex[self.image_key] if isinstance(ex, dict) else ex)
        if self.cache:
            self._cache[i] = a
        return a


def make_source(spec: str, *, cache: bool = False, tfds_data_dir: str | None = None, image_key: str = "image",
                manual_dir: str | None = None, default_split: str = "train", mask_dir: str | None = None):
    """``'tfds:NAME[:SPLIT]'`` (NAME may carry a config, ``div2k/bicubic_x2``) or a folder/glob/file list;
    ``mask_dir``: a folder of masks beside the images (folders only, :class:`FolderSource`)."""
    if spec.startswith("tfds:"):
        if mask_dir:
            raise ValueError(f"data.masks works with image folders, not with {spec!r}")
        rest = spec[len("tfds:"):]
        name, _, split = rest.partition(":")
        return TfdsSource(name, split or default_split, tfds_data_dir, image_key, manual_dir, cache)
    return FolderSource(spec, cache=cache, mask_dir=mask_dir)


def _pad_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    ph, pw = max(0, h - img.shape[0]), max(0, w - img.shape[1])
    if ph or pw:
        img = np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
    return img


def _random_flips(out: np.ndarray, rng: np.random.Generator, hflip: bool, vflip: bool) -> np.ndarray:
    """Flip a crop horizontally / vertically by one draw of two coins (drawn whether used or not)."""
    flips = rng.integers(0, 2, size=2)
    if hflip and flips[0]:
        out = out[:, ::-1]
    if vflip and flips[1]:
        out = out[::-1]
    return np.ascontiguousarray(out)


def random_crop_flip(img: np.ndarray, size: int, rng: np.random.Generator, hflip: bool = True,
                     vflip: bool = False) -> np.ndarray:
    """A uniformly placed ``size``² crop (symmetric padding if the image is smaller), random flips."""
    img = _pad_to(img, size, size)
    h, w = img.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    out = img[top: top + size, left: left + size]
    return _random_flips(out, rng, hflip, vflip)


def parse_scale(spec) -> tuple[float, float] | None:
    """``''`` / ``None`` → no rescaling; ``'a,b'`` or ``(a, b)`` with ``0 < a ≤ b ≤ 1`` → a downscale range."""
    if spec is None or spec == "" or spec == ():
        return None
    parts = [float(v) for v in (spec.split(",") if isinstance(spec, str) else spec)]
    if len(parts) == 1:
        parts = parts * 2
    lo, hi = parts
    if not (0.0 < lo <= hi <= 1.0):
        raise ValueError(f"data.scale must be 'lo,hi' with 0 < lo <= hi <= 1 (downscaling only), got {spec!r}")
    return lo, hi


def random_scaled_crop_flip(img: np.ndarray, size: int, rng: np.random.Generator, scale: tuple[float, float],
                            hflip: bool = True, vflip: bool = False) -> np.ndarray:
    """A ``size``² crop of the image downscaled by a factor drawn uniformly from ``scale`` (Lanczos).

    Only the source window that maps onto the crop is resampled: a window of side ``round(size / s)``
    (at most the image's short side, so the effective factor can only grow towards 1 and the
    image is never upscaled) is placed uniformly, then resized to ``size``² with PIL's Lanczos
    filter. Downscaling before cropping removes the JPEG block traces and sensor noise of
    photo collections (shared/data/README.md advises a factor ≤ 0.75 for OSIE) and gives the
    model the scale variety of the usual learned-compression recipes. Deterministic in ``rng``.
    """
    from PIL import Image

    h, w = img.shape[:2]
    s = float(rng.uniform(scale[0], scale[1]))
    r = min(int(round(size / s)), h, w)
    if r <= size:  # the image is too small to downscale to this crop: plain crop (with padding)
        return random_crop_flip(img, size, rng, hflip, vflip)
    top = int(rng.integers(0, h - r + 1))
    left = int(rng.integers(0, w - r + 1))
    win = np.ascontiguousarray(img[top: top + r, left: left + r])
    out = np.asarray(Image.fromarray(win[..., :3]).resize((size, size), Image.LANCZOS))
    if img.shape[-1] == 4:  # a mask channel: resized on its own (PIL's RGBA resize would premultiply by it)
        m = np.asarray(Image.fromarray(np.ascontiguousarray(win[..., 3])).resize((size, size), Image.BILINEAR))
        out = np.concatenate([out, m[:, :, None]], axis=-1)
    return _random_flips(out, rng, hflip, vflip)


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        return img
    img = _pad_to(img, size, size)
    h, w = img.shape[:2]
    t, l = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[t: t + size, l: l + size])


class _EpochOrder:
    """Permutation of the dataset for each epoch, a pure function of (seed, epoch)."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self._perms: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._lock = threading.Lock()

    def index(self, g: int) -> int:
        epoch, pos = divmod(int(g), self.n)
        if not self.shuffle:
            return pos
        with self._lock:
            perm = self._perms.get(epoch)
            if perm is None:
                perm = np.random.default_rng((self.seed, epoch, 0x5EED)).permutation(self.n)
                self._perms[epoch] = perm
                while len(self._perms) > 4:
                    self._perms.popitem(last=False)
        return int(perm[pos])

    def __getstate__(self):  # picklable for Grain's worker processes (grain_pipeline.py): no lock, no cache
        return {"n": self.n, "seed": self.seed, "shuffle": self.shuffle}

    def __setstate__(self, state):
        self.__init__(state["n"], state["seed"], state["shuffle"])


class TrainBatches:
    """Deterministic, resumable stream of this process's part of every global training batch.

    ``TrainBatches(source, global_batch, crop, seed, process_index, process_count)``;
    ``batch(step)`` builds the local rows of step ``step``; ``iterate(start_step)`` yields
    ``(step, local_batch)`` with ``prefetch`` batches built ahead by ``workers`` threads.
    """

    def __init__(self, source, global_batch: int, crop: int = 256, seed: int = 0, process_index: int = 0,
                 process_count: int = 1, hflip: bool = True, vflip: bool = False, shuffle: bool = True,
                 prefetch: int = 2, workers: int = 2, scale=None):
        if global_batch % process_count:
            raise ValueError(f"global batch {global_batch} is not divisible by the {process_count} processes")
        if len(source) == 0:
            raise ValueError("empty training source")
        self.source = source
        self.global_batch = global_batch
        self.local_batch = global_batch // process_count
        self.crop = crop
        self.seed = seed
        self.process_index = process_index
        self.hflip, self.vflip = hflip, vflip
        self.order = _EpochOrder(len(source), seed, shuffle)
        self.prefetch = max(0, prefetch)
        self.workers = max(1, workers)
        self.scale = parse_scale(scale)

    def slots(self) -> range:
        lo = self.process_index * self.local_batch
        return range(lo, lo + self.local_batch)

    def example(self, step: int, slot: int) -> np.ndarray:
        g = step * self.global_batch + slot
        img = self.source[self.order.index(g)]
        rng = np.random.default_rng((self.seed, step, slot))
        if self.scale is not None:
            return random_scaled_crop_flip(img, self.crop, rng, self.scale, self.hflip, self.vflip)
        return random_crop_flip(img, self.crop, rng, self.hflip, self.vflip)

    def batch(self, step: int) -> np.ndarray:
        return np.stack([self.example(step, k) for k in self.slots()])

    def global_indices(self, step: int) -> list[int]:
        """Dataset indices of the whole global batch of ``step`` (all processes)."""
        return [self.order.index(step * self.global_batch + k) for k in range(self.global_batch)]

    def iterate(self, start_step: int = 0, stop_step: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        step = start_step
        if self.prefetch == 0:
            while stop_step is None or step < stop_step:
                yield step, self.batch(step)
                step += 1
            return
        pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="lic-input")
        pending: collections.deque = collections.deque()
        nxt = step
        try:
            while stop_step is None or step < stop_step:
                while len(pending) < self.prefetch + 1 and (stop_step is None or nxt < stop_step):
                    pending.append((nxt, pool.submit(self.batch, nxt)))
                    nxt += 1
                s, fut = pending.popleft()
                yield s, fut.result()
                step = s + 1
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)


class WaitMeter:
    """Wraps an iterator; ``waited`` is the total time spent inside its ``next`` while ``idle()`` said
    the consumer had nothing else in flight (default: always). The training loop passes "the last
    dispatched step has finished", so a wait that overlaps queued device work (JAX dispatches steps
    asynchronously) does not count: ``waited`` is the time the device sat idle for want of a batch, and
    the loop reports its share of each logging window as ``input_wait_frac``. ``blocked`` counts every wait."""

    def __init__(self, iterable, idle=None):
        self._it = iter(iterable)
        self._idle = idle
        self.waited = 0.0
        self.blocked = 0.0

    def __iter__(self):
        return self

    def __next__(self):
        idle = True if self._idle is None else bool(self._idle())
        t = time.perf_counter()
        try:
            return next(self._it)
        finally:
            dt = time.perf_counter() - t
            self.blocked += dt
            if idle:
                self.waited += dt

    def close(self):
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


def eval_batches(source, global_batch: int, crop: int = 256, process_index: int = 0, process_count: int = 1,
                 limit: int = -1):
    """Yield ``(local_images, local_weights)`` for every global validation batch.

    Images are centre crops of ``crop``² (0: full images — they must then share one size). The
    last global batch is padded by repeating image 0 with weight 0, so every batch has the same
    shape (one compiled eval step) and padded rows do not count.
    """
    if global_batch % process_count:
        raise ValueError(f"validation batch {global_batch} is not divisible by the {process_count} processes")
    n = len(source) if limit is None or limit < 0 else min(limit, len(source))
    local = global_batch // process_count
    lo = process_index * local
    for start in range(0, n, global_batch):
        imgs, weights = [], []
        for k in range(lo, lo + local):
            i = start + k
            valid = i < n
            imgs.append(center_crop(source[i if valid else 0], crop))
            weights.append(1.0 if valid else 0.0)
        yield np.stack(imgs), np.asarray(weights, np.float32)
