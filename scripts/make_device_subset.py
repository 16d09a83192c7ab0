#!/usr/bin/env python
"""Build the compact data subset that travels to a lent GPU machine (``benchmarks/gpu_suite.sh``).

The device gets the repository plus carried paths, 64 MiB in all, and never ``../shared``. This
writes ``DEST/train`` (one 256² crop per training photo of ``shared/data/photos``, each photo
downscaled by a random factor in [0.5, 0.75] first, as ``configs/bundled_vr.py`` trains; stored
as WebP quality 90 (or ``--format jpg``, quality 92) to fit; ``--with-train-crops`` adds the 40 MB
of ``shared/data/train`` PNGs), ``DEST/val`` (the first ``--val`` images of ``shared/data/val``, PNG)
and ``DEST/kodak`` (the first ``--kodak`` Kodak images, PNG, for evaluation only). The crops are a
pure function of ``--seed``.

``--max-mib`` is a budget, filled: validation and Kodak images first, then photo crops in order
until the next one would pass it (``scripts/prepare_device_carry.sh`` passes what the repository
and the wheels leave of the device's 64 MiB). It refuses when validation and Kodak alone pass it.

    .venv/bin/python scripts/make_device_subset.py --dest .device_carry/data --max-mib 8
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lic_jax.train.input_pipeline import list_images, random_scaled_crop_flip, to_rgb_uint8  # noqa: E402


def main():
    shared = Path(os.environ.get("LIC_JAX_SHARED", REPO.parent / "shared")) / "data"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", default=str(REPO / ".device_carry" / "data"))
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--kodak", type=int, default=8)
    ap.add_argument("--val", type=int, default=None, help="validation images (default: all)")
    ap.add_argument("--format", choices=("webp", "jpg"), default="webp")
    ap.add_argument("--quality", type=int, default=None, help="default: 90 for webp, 92 for jpg")
    ap.add_argument("--with-train-crops", action="store_true")
    ap.add_argument("--max-photos", type=int, default=900, help="photos used (sorted: all 400 BSDS500, then OSIE)")
    ap.add_argument("--per-photo", type=int, default=1,
                    help="crops per photo: pass k takes every photo's k-th crop, while the budget lasts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-mib", type=float, default=31.0)
    a = ap.parse_args()
    quality = a.quality or (90 if a.format == "webp" else 92)
    budget = int(a.max_mib * 2**20)
    dest = Path(a.dest)
    if dest.exists():
        shutil.rmtree(dest)
    for d in ("train", "val", "kodak"):
        (dest / d).mkdir(parents=True)
    for f in list_images(str(shared / "val"))[: a.val]:
        shutil.copyfile(f, dest / "val" / Path(f).name)
    for f in sorted((shared / "kodak").glob("kodim*.png"))[: a.kodak]:
        shutil.copyfile(f, dest / "kodak" / f.name)
    if a.with_train_crops:
        for f in list_images(str(shared / "train")):
            shutil.copyfile(f, dest / "train" / Path(f).name)
    used = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    if used > budget:
        shutil.rmtree(dest)
        sys.exit(f"error: validation and Kodak images alone are {used / 2**20:.1f} MiB > --max-mib {a.max_mib}; "
                 "lower --val or --kodak")
    photos = list_images(str(shared / "photos"))[: a.max_photos]
    n, full = 0, False
    for k in range(a.per_photo):  # pass 0 is the crops of before --per-photo existed: rng (seed, i)
        for i, f in enumerate(photos):
            with Image.open(f) as im:
                img = to_rgb_uint8(np.asarray(im.convert("RGB")))
            rng = np.random.default_rng((a.seed, i) if k == 0 else (a.seed, i, k))
            crop = random_scaled_crop_flip(img, a.crop, rng, (0.5, 0.75), hflip=False)
            out = dest / "train" / (f"p{i:04d}.{a.format}" if k == 0 else f"p{i:04d}_{k}.{a.format}")
            Image.fromarray(crop).save(out, quality=quality)
            if used + out.stat().st_size > budget:
                out.unlink()
                full = True
                break
            used += out.stat().st_size
            n += 1
        if full:
            break
    print(f"{dest}: {n} crops of {len(photos)} photos ({a.crop}², {a.format} q{quality})"
          f"{' + the train crops' if a.with_train_crops else ''}, {len(list((dest / 'val').iterdir()))} validation "
          f"and {len(list((dest / 'kodak').iterdir()))} Kodak images: {used / 2**20:.1f} MiB of {a.max_mib}")

if __name__ == "__main__":
    main()
