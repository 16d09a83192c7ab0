"""Published rate-distortion curves ("anchors") by short name.

The anchor files are the verbatim copies in ``shared/anchors/`` (CompressAI ``results/image/**``
JSONs, TFC ``results/image_compression/kodak/**`` text files; see its README). Their location:
``$LIC_JAX_ANCHORS`` if set, else ``$LIC_JAX_SHARED/anchors`` (default ``<repo>/../shared/anchors``). Any argument that is an existing
file path is loaded directly instead.

Names:

* short aliases for the classical codecs on Kodak: ``jpeg`` (CompressAI, Pillow 7.1.2, 4:2:0),
  ``webp``, ``jpeg2000`` (ffmpeg), ``bpg444`` (BPG 0.9.8 4:4:4, x265), ``hm``, ``av1``, ``vtm``;
  TFC's: ``tfc-jpeg420``, ``tfc-bpg444``, ``tfc-bpg420``, ``tfc-webp``, ``tfc-j2k``;
* any CompressAI Kodak file by its stem, e.g. ``compressai-bmshj2018-hyperprior_mse_cuda`` or
  ``paper-mbt2018``; CLIC 2020 files as ``clic-mobile:<stem>`` / ``clic-professional:<stem>``;
* any TFC Kodak file as ``tfc:<stem>`` (e.g. ``tfc:toderici-2017-cvpr``). TFC publishes PSNR and
  MS-SSIM in two files with the same rates; both are merged into one curve.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .results import RDCurve, load_curve

__all__ = ["anchors_dir", "load_anchor", "anchor_names", "ALIASES"]

ALIASES = {
    "jpeg": "compressai_kodak/jpeg.json",
    "webp": "compressai_kodak/webp.json",
    "jpeg2000": "compressai_kodak/jpeg2000.json",
    "bpg444": "compressai_kodak/bpg_444_x265_ycbcr.json",
    "bpg": "compressai_kodak/bpg_444_x265_ycbcr.json",
    "hm": "compressai_kodak/hm.json",
    "av1": "compressai_kodak/av1.json",
    "vtm": "compressai_kodak/vtm.json",
    "tfc-jpeg420": "tfc:jpeg420",
    "tfc-bpg444": "tfc:bpg444",
    "tfc-bpg420": "tfc:bpg420",
    "tfc-webp": "tfc:webp",
    "tfc-j2k": "tfc:j2k-kdu5",
}

LABELS = {
    "jpeg": "JPEG 4:2:0 (CompressAI, Pillow)",
    "webp": "WebP (CompressAI, Pillow)",
    "jpeg2000": "JPEG2000 (CompressAI, ffmpeg)",
    "bpg444": "BPG 4:4:4 (CompressAI)",
    "bpg": "BPG 4:4:4 (CompressAI)",
    "hm": "HEVC HM (CompressAI)",
    "av1": "AV1 (CompressAI)",
    "vtm": "VVC VTM (CompressAI)",
    "tfc-jpeg420": "JPEG 4:2:0 (TFC)",
    "tfc-bpg444": "BPG 4:4:4 (TFC)",
    "tfc-bpg420": "BPG 4:2:0 (TFC)",
    "tfc-webp": "WebP (TFC)",
    "tfc-j2k": "JPEG2000 Kakadu (TFC)",
}


def anchors_dir() -> Path:
    env = os.environ.get("LIC_JAX_ANCHORS")
    if env:
        return Path(env)
    from lic_jax.utils.paths import shared_dir

    return shared_dir() / "anchors"


def _tfc(stem: str, root: Path) -> RDCurve:
    ps, ms = root / "tfc_kodak_psnr" / f"{stem}.txt", root / "tfc_kodak_msssim" / f"{stem}.txt"
    curves = [load_curve(p) for p in (ps, ms) if p.exists()]
    if not curves:
        raise FileNotFoundError(f"no TFC anchor {stem!r} under {root}")
    out = curves[0]
    if len(curves) == 2 and np.allclose(curves[0].bpp, curves[1].bpp):
        out.metrics.update(curves[1].metrics)
    out.source = str(ps if ps.exists() else ms)
    out.name = f"{out.name} (TFC)"
    return out


def load_anchor(name: str, root=None) -> RDCurve:
    """An anchor curve by name (see the module docstring) or by file path."""
    if os.path.isfile(name):
        return load_curve(name)
    root = Path(root) if root is not None else anchors_dir()
    target = ALIASES.get(name.lower(), name)
    if target.startswith("tfc:"):
        c = _tfc(target[4:], root)
    elif target.startswith(("clic-mobile:", "clic-professional:")):
        sub, stem = target.split(":", 1)
        c = load_curve(root / "compressai_clic2020" / sub[5:] / f"{stem}.json")
    else:
        p = root / target if target.endswith(".json") else root / "compressai_kodak" / f"{target}.json"
        if not p.exists():
            raise FileNotFoundError(
                f"unknown anchor {name!r} (looked for {p}); known names: {', '.join(anchor_names(root)[:12])} …"
            )
        c = load_curve(p)
    if name.lower() in LABELS:
        c.name = LABELS[name.lower()]
    return c


def anchor_names(root=None) -> list[str]:
    root = Path(root) if root is not None else anchors_dir()
    names = list(ALIASES)
    if (root / "compressai_kodak").is_dir():
        names += sorted(p.stem for p in (root / "compressai_kodak").glob("*.json"))
    if (root / "tfc_kodak_psnr").is_dir():
        names += sorted(f"tfc:{p.stem}" for p in (root / "tfc_kodak_psnr").glob("*.txt"))
    return names
