"""Evaluation images: a directory, or a named data set (``kodak``, ``clic``).

``resolve_dataset(spec)`` returns a :class:`Dataset` — a named, ordered list of images, each
loaded lazily as an (H, W, 3) uint8 RGB array.

* a **directory**: every file below it (recursively) with one of CompressAI's ``eval_model``
  extensions (``.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp``), sorted by path — the same list
  and order CompressAI evaluates.
* ``kodak``: the 24 Kodak PhotoCD images (768×512 / 512×768 PNGs ``kodim01.png`` … ``kodim24.png``).
  tensorflow-datasets has no Kodak builder, so it is always a local directory, found as (first hit
  wins): the ``data_dir`` argument (``--data-dir``), ``$LIC_JAX_KODAK_DIR``,
  ``$LIC_JAX_DATA_DIR/kodak``, ``$LIC_JAX_SHARED/data/kodak`` (default ``<repo>/../shared/data/kodak``). How to get the files:
  docs/EVALUATION.md ("Getting Kodak").
* ``stripes``: the seed-000 stripe images (Barbara, the Houses, periodic textures) in
  ``$LIC_JAX_SHARED/data/stripes`` (default ``<repo>/../shared/data/stripes``), or ``--data-dir``.
* ``clic`` / ``clic:<split>``: CLIC 2020 (professional + mobile, as tfds' ``clic`` builder merges them;
  split ``validation`` by default, also ``test`` / ``train``). Sources, first hit wins: the
  ``data_dir`` argument or ``$LIC_JAX_CLIC_DIR`` (a plain directory of PNGs, e.g. the unzipped
  ``professional_valid_2020.zip`` + ``mobile_valid_2020.zip``), else tensorflow-datasets' ``clic``
  builder read with ``tfds.data_source`` from an already prepared copy in ``$TFDS_DATA_DIR``
  (default ``~/tensorflow_datasets``). Preparing the tfds copy needs TensorFlow and network access
  (the builder downloads the zips and walks them with ``tf.io.gfile``); tfds can only read it back
  without TensorFlow if it was prepared with ``file_format="array_record"``. See docs/EVALUATION.md.

Images are converted to RGB with Pillow (``Image.open(p).convert("RGB")``, as CompressAI's
``read_image``); 16-bit or alpha inputs are thus reduced to 8-bit RGB.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

__all__ = ["IMG_EXTENSIONS", "Dataset", "collect_images", "resolve_dataset", "read_rgb", "default_kodak_dir",
           "DatasetNotFound"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetNotFound(FileNotFoundError):
    """A named data set is not available locally (the message says how to get it)."""


def read_rgb(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


@dataclasses.dataclass
class Dataset:
    name: str
    names: list[str]
    loaders: list[Callable[[], np.ndarray]]
    source: str = ""
    masks: list[Callable[[tuple], np.ndarray]] | None = None  # per image: (H, W) → bool region mask

    def __len__(self):
        return len(self.names)

    def with_masks(self, mask_dir) -> "Dataset":
        """The same images with a region mask each: ``<mask_dir>/<image path without suffix>.png``
        (the naming of ``python -m lic_jax.train.labels IMAGES --out MASKDIR``; any PNG mask that
        :func:`lic_jax.train.labels.user_mask` reads). Every mask file must exist (checked here, one
        line naming the first missing one); each is read and size-checked when its image is evaluated."""
        import os

        from lic_jax.train.labels import user_mask

        if not os.path.isdir(mask_dir):
            raise DatasetNotFound(f"--masks {mask_dir}: not a directory")
        paths = [os.path.join(mask_dir, os.path.splitext(n)[0] + ".png") for n in self.names]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise DatasetNotFound(f"{len(missing)} of {len(paths)} masks missing, e.g. {missing[0]} "
                                  f"(expected <mask_dir>/<image name>.png)")
        return dataclasses.replace(self, masks=[(lambda shape, p=p: user_mask(p, shape)) for p in paths])

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for n, load in zip(self.names, self.loaders):
            yield n, load()

    def limit(self, n: int | None) -> "Dataset":
        if n is None:
            return self
        return Dataset(self.name, self.names[:n], self.loaders[:n], self.source,
                       None if self.masks is None else self.masks[:n])


def collect_images(root) -> list[Path]:
    """Image files below ``root`` with CompressAI's extensions, sorted by path (CompressAI's
    ``collect_images`` order; the extension match here is case-insensitive)."""
    root = Path(root)
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS]
    return sorted(files)


def _dir_dataset(root, name: str | None = None) -> Dataset:
    root = Path(root)
    files = collect_images(root)
    if not files:
        raise DatasetNotFound(f"no images ({', '.join(IMG_EXTENSIONS)}) found under {root}")
    names = [str(p.relative_to(root)) for p in files]
    return Dataset(name or root.name, names, [(lambda p=p: read_rgb(p)) for p in files], str(root))


def _repo_shared() -> Path:
    from lic_jax.utils.paths import shared_dir

    return shared_dir()


def default_kodak_dir(data_dir=None) -> Path | None:
    cands = []
    if data_dir:
        cands.append(Path(data_dir))
    if os.environ.get("LIC_JAX_KODAK_DIR"):
        cands.append(Path(os.environ["LIC_JAX_KODAK_DIR"]))
    if os.environ.get("LIC_JAX_DATA_DIR"):
        cands.append(Path(os.environ["LIC_JAX_DATA_DIR"]) / "kodak")
    cands.append(_repo_shared() / "data" / "kodak")
    for c in cands:
        if c.is_dir() and collect_images(c):
            return c
    return None


KODAK_HELP = (
    "Kodak is not available locally. Put kodim01.png … kodim24.png in a directory and pass it with "
    "--data-dir DIR (or set LIC_JAX_KODAK_DIR=DIR); e.g. on a machine with network access:\n"
    "  mkdir -p kodak && for i in $(seq -w 1 24); do curl -fsSL -o kodak/kodim$i.png "
    "https://r0k.us/graphics/kodak/kodak/kodim$i.png; done\n"
    "(tensorflow-datasets has no Kodak builder.)"
)


def _tfds_dataset(builder: str, split: str, data_dir=None) -> Dataset:
    try:
        import tensorflow_datasets as tfds
    except Exception as e:  # noqa: BLE001 - ImportError or a broken optional stack
        raise DatasetNotFound(f"tensorflow-datasets is not importable ({e}); install lic_jax[data]") from None
    try:
        src = tfds.data_source(builder, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # noqa: BLE001 - tfds raises many types for "not prepared"
        raise DatasetNotFound(
            f"tfds dataset {builder!r} split {split!r} is not prepared under "
            f"{data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')} in array_record format "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    n = len(src)

    def load(i):
        ex = src[i]
        img = np.asarray(ex["image"])
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        if img.shape[-1] == 4:
            img = img[..., :3]
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        return np.ascontiguousarray(img.astype(np.uint8))

    return Dataset(f"{builder}:{split}", [f"{builder}-{split}-{i:05d}" for i in range(n)],
                   [(lambda i=i: load(i)) for i in range(n)], f"tfds:{builder}/{split}")


def resolve_dataset(spec: str, data_dir=None, tfds_data_dir=None) -> Dataset:
    """A :class:`Dataset` for ``spec`` = a directory, ``kodak``, ``clic`` or ``clic:<split>``
    (or ``tfds:<builder>[:<split>]`` for any tfds builder prepared in array_record format)."""
    low = spec.lower()
    if low == "kodak":
        d = default_kodak_dir(data_dir)
        if d is None:
            raise DatasetNotFound(KODAK_HELP)
        return _dir_dataset(d, "kodak")
    if low == "stripes":
        d = Path(data_dir) if data_dir else _repo_shared() / "data" / "stripes"
        if not d.is_dir():
            raise DatasetNotFound(f"the stripe images are not at {d} (pass --data-dir DIR)")
        return _dir_dataset(d, "stripes")
    if low == "clic" or low.startswith("clic:"):
        split = spec.split(":", 1)[1] if ":" in spec else "validation"
        local = data_dir or os.environ.get("LIC_JAX_CLIC_DIR")
        if local:
            return _dir_dataset(local, f"clic:{split}")
        try:
            return _tfds_dataset("clic", split, tfds_data_dir)
        except DatasetNotFound as e:
            raise DatasetNotFound(
                f"{e}\nCLIC 2020: either unzip the CLIC archives (e.g. professional_valid_2020.zip and "
                "mobile_valid_2020.zip from https://data.vision.ee.ethz.ch/cvl/clic/) into a directory and pass "
                "--data-dir DIR (or set LIC_JAX_CLIC_DIR), or prepare tfds' 'clic' builder on a machine with "
                "TensorFlow and network access with file_format='array_record' and point --tfds-data-dir at it."
            ) from None
    if low.startswith("tfds:"):
        parts = spec.split(":")
        return _tfds_dataset(parts[1], parts[2] if len(parts) > 2 else "test", tfds_data_dir)
    if os.path.isdir(spec):
        return _dir_dataset(spec)
    raise DatasetNotFound(f"{spec!r} is neither a directory nor a known data set (kodak, stripes, clic[:split], "
                          "tfds:NAME[:SPLIT])")
