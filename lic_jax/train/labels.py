"""Importance labels t_a for Akutsu et al. 2020 (seed 002, issue 20; docs/AKUTSU.md "Labels").

The paper machine-generates face and text masks (t_a) with learned detectors and weights the
detail decoder's MS-SSIM by them. Nothing here downloads a model; the substitutes ship inside
registry packages (the ``labels`` extra, ``opencv-python-headless>=4.8,<5``):

* :func:`face_mask`: OpenCV's bundled frontal-face Haar cascade (``cv2.data.haarcascades``;
  OpenCV 5 no longer ships the cascades, hence ``<5``), detected rectangles filled.
* :func:`text_mask`: MSER regions filtered to character-like ones (size, aspect, fill, stroke
  width, contrast), kept only in aligned groups of ≥ 3, each neighbouring pair's box filled.
* :func:`user_mask`: a user's own PNG mask (nonzero = important), named by :func:`mask_path`:
  ``<mask_dir>/<image path relative to the image root, suffix replaced by .png>`` (a flat folder:
  ``<mask_dir>/<image stem>.png``).
* :func:`importance_weights`: the t_a map (float32, (H, W, 1), mean 1, background ε-floored) that
  ``losses_gan.weighted_ms_ssim`` consumes.

``python -m lic_jax.train.labels IMAGES --out MASKS`` precomputes face | text masks of a folder
(so training does not run detectors per step). Everything is host-side numpy; ``cv2`` is imported
inside the functions, so ``lic_jax`` imports without it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import numpy as np

__all__ = ["LabelError", "MaskFileError", "MaskShapeError", "FACE", "TEXT", "IMPORTANCE_EPS",
           "face_mask", "text_mask", "detect_mask", "mask_path", "user_mask", "importance_weights",
           "precompute_masks", "main"]

# Haar cascade (Viola–Jones) parameters. scaleFactor 1.1 and minNeighbors 5 are OpenCV's usual
# values (fewer false positives than the default 3); faces below min_size px are below what a
# 0.15 bpp codec can render anyway; the grey image is histogram-equalised first.
FACE = dict(cascade="haarcascade_frontalface_default.xml", scale_factor=1.1, min_neighbors=5,
            min_size=24, pad=0.0)
# MSER text regions (module docstring). Heights in px and as a fraction of the image height;
# aspect = w / h; fill = region pixels / box area; stroke = mean stroke width / h and its
# coefficient of variation (distance-transform ridge); contrast = |mean inside − mean of the rest
# of the box (2 px margin)| in grey levels; blur = Gaussian σ before MSER (suppresses noise blobs).
TEXT = dict(delta=5, min_area=20, max_area_frac=0.05, max_variation=0.25, blur=0.7, min_h=8,
            max_h_frac=0.1, aspect=(0.1, 2.0), fill=(0.2, 0.95), max_stroke=0.4, max_stroke_cv=0.5,
            min_contrast=20.0, same_height=0.6, align=0.4, gap=1.0, neighbours=2)
IMPORTANCE_EPS = 1e-3  # background weight relative to a marked pixel (= losses_gan.WEIGHT_EPS)


class LabelError(ValueError):
    """A label / mask problem; the message is one line."""


class MaskFileError(LabelError):
    """A user mask that is missing or cannot be decoded."""


class MaskShapeError(LabelError):
    """A user mask whose size or layout does not fit its image."""


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("face/text masks need OpenCV: pip install 'lic_jax[labels]' "
                          f"(opencv-python-headless>=4.8,<5); {e}") from None
    return cv2


def _grey(img) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise LabelError(f"expected a uint8 image, got {a.dtype}")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return np.ascontiguousarray(a)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise LabelError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    rgb = a[..., :3].astype(np.float32)
    y = rgb @ np.array([0.299, 0.587, 0.114], np.float32)  # BT.601 luma, as cv2's RGB2GRAY
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def face_mask(img_uint8, **params) -> np.ndarray:
    """Faces of an RGB / grey uint8 image as a bool (H, W) mask: filled Haar-cascade rectangles.

    Substitute for the learned face detector of Akutsu et al. 2020 (seed 002) that marks t_a.
    ``params`` override :data:`FACE` (``pad``: grow each box by this fraction of its size per side)."""
    p = {**FACE, **params}
    cv2 = _cv2()
    g = _grey(img_uint8)
    path = os.path.join(cv2.data.haarcascades, p["cascade"])
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise LabelError(f"OpenCV cannot load the Haar cascade {path} (OpenCV 5 dropped them; "
                         "install opencv-python-headless>=4.8,<5)")
    boxes = cascade.detectMultiScale(cv2.equalizeHist(g), scaleFactor=p["scale_factor"],
                                     minNeighbors=p["min_neighbors"], minSize=(p["min_size"],) * 2)
    m = np.zeros(g.shape, bool)
    for x, y, w, h in np.asarray(boxes, np.int64).reshape(-1, 4):
        dx, dy = int(round(p["pad"] * w)), int(round(p["pad"] * h))
        m[max(0, y - dy):y + h + dy, max(0, x - dx):x + w + dx] = True
    return m


def _char_features(g, pts, box):
    """(mean stroke width / h, stroke-width CV, contrast) of one MSER region."""
    cv2 = _cv2()
    x, y, w, h = box
    reg = np.zeros((h + 2, w + 2), np.uint8)
    reg[pts[:, 1] - y + 1, pts[:, 0] - x + 1] = 1
    dt = cv2.distanceTransform(reg, cv2.DIST_L2, 3)
    ridge = (dt > 0) & (dt >= cv2.dilate(dt, np.ones((3, 3), np.uint8)))
    sw = 2.0 * dt[ridge]
    y0, y1, x0, x1 = max(0, y - 2), min(g.shape[0], y + h + 2), max(0, x - 2), min(g.shape[1], x + w + 2)
    win = g[y0:y1, x0:x1].astype(np.float32)
    inside = np.zeros(win.shape, bool)
    inside[pts[:, 1] - y0, pts[:, 0] - x0] = True
    rest = win[~inside]
    contrast = abs(float(win[inside].mean()) - float(rest.mean())) if rest.size else 0.0
    return float(sw.mean()) / h, float(sw.std() / sw.mean()), contrast


def text_mask(img_uint8, **params) -> np.ndarray:
    """Text regions of an RGB / grey uint8 image as a bool (H, W) mask (classical, no model).

    Substitute for the learned text detector of Akutsu et al. 2020 (seed 002) that marks t_a:

    1. grey, Gaussian blur σ = ``blur``, MSER (both polarities) with ``delta``, ``min_area``,
       ``max_area_frac``·H·W, ``max_variation``;
    2. character-like regions: ``min_h`` ≤ h ≤ ``max_h_frac``·H, ``aspect`` bounds on w / h,
       ``fill`` bounds on the region's share of its box, mean stroke width ≤ ``max_stroke``·h with
       coefficient of variation ≤ ``max_stroke_cv`` (ridge of the distance transform), contrast
       ≥ ``min_contrast`` grey levels against the rest of its box;
    3. grouping: two candidates are neighbours when their heights differ by a ratio ≥
       ``same_height``, their vertical centres by < ``align``·h, the horizontal gap between the
       boxes is < ``gap``·h, and their horizontal centres are > 0.3·h apart (not the same glyph
       twice); a candidate with ≥ ``neighbours`` neighbours is text;
    4. the mask: the union box of every neighbouring pair of text candidates (which fills the
       gaps between letters of a line).

    ``params`` override :data:`TEXT`."""
    p = {**TEXT, **params}
    cv2 = _cv2()
    g = _grey(img_uint8)
    H, W = g.shape
    gb = cv2.GaussianBlur(g, (0, 0), p["blur"]) if p["blur"] > 0 else g
    mser = cv2.MSER_create(delta=int(p["delta"]), min_area=int(p["min_area"]),
                           max_area=max(int(p["min_area"]) + 1, int(p["max_area_frac"] * H * W)),
                           max_variation=float(p["max_variation"]))
    regions, boxes = mser.detectRegions(gb)
    cand = set()
    for pts, (x, y, w, h) in zip(regions, np.asarray(boxes).reshape(-1, 4)):
        x, y, w, h = int(x), int(y), int(w), int(h)
        if h < p["min_h"] or h > p["max_h_frac"] * H:
            continue
        if not p["aspect"][0] <= w / h <= p["aspect"][1]:
            continue
        if not p["fill"][0] <= len(pts) / (w * h) <= p["fill"][1]:
            continue
        stroke, stroke_cv, contrast = _char_features(gb, pts, (x, y, w, h))
        if stroke > p["max_stroke"] or stroke_cv > p["max_stroke_cv"] or contrast < p["min_contrast"]:
            continue
        cand.add((x, y, w, h))
    m = np.zeros((H, W), bool)
    if not cand:
        return m
    b = np.array(sorted(cand), np.int64)
    x, y, w, h = b.T
    cx, cy = x + w / 2.0, y + h / 2.0
    hmax = np.maximum(h[:, None], h[None, :])
    gap = np.maximum(x[:, None], x[None, :]) - np.minimum((x + w)[:, None], (x + w)[None, :])
    nb = ((np.minimum(h[:, None], h[None, :]) / hmax >= p["same_height"])
          & (np.abs(cy[:, None] - cy[None, :]) < p["align"] * hmax)
          & (gap < p["gap"] * hmax)
          & (np.abs(cx[:, None] - cx[None, :]) > 0.3 * hmax))
    text = nb.sum(1) >= p["neighbours"]
    for i, j in zip(*np.nonzero(nb & text[:, None] & text[None, :])):
        x0, y0 = min(x[i], x[j]), min(y[i], y[j])
        x1, y1 = max(x[i] + w[i], x[j] + w[j]), max(y[i] + h[i], y[j] + h[j])
        m[y0:y1, x0:x1] = True
    return m


def detect_mask(img_uint8, faces: bool = True, text: bool = True) -> np.ndarray:
    """face_mask | text_mask (what :func:`precompute_masks` writes)."""
    g = _grey(img_uint8)
    m = np.zeros(g.shape, bool)
    if faces:
        m |= face_mask(g)
    if text:
        m |= text_mask(g)
    return m


def mask_path(image_path: str, image_root: str, mask_dir: str) -> str:
    """The mask of ``image_path``: ``<mask_dir>/<its path relative to image_root>`` with the
    suffix replaced by ``.png`` (a flat folder: ``<mask_dir>/<stem>.png``).

    ``image_root`` may be the image file itself (then the mask is ``<mask_dir>/<stem>.png``)."""
    root = image_root if os.path.isdir(image_root) else os.path.dirname(image_root)
    rel = os.path.relpath(os.path.abspath(image_path), os.path.abspath(root))
    if rel.startswith(os.pardir + os.sep) or rel == os.pardir:
        raise LabelError(f"image {image_path} is not under the image root {image_root}")
    return os.path.join(mask_dir, os.path.splitext(rel)[0] + ".png")


def user_mask(path: str, shape: Sequence[int]) -> np.ndarray:
    """A user's PNG mask as bool (H, W): nonzero = important. Grey, 1-bit and 16-bit grey: the
    value; palette: its colour; RGB: any nonzero channel; with alpha (LA, RGBA, palette with
    transparency): a nonzero colour where alpha > 0. ``shape`` is the image's (H, W[, C]).

    Raises :class:`MaskFileError` (missing, not a PNG, undecodable) or :class:`MaskShapeError`
    (size differs from the image's), each with a one-line message."""
    from PIL import Image

    h, w = int(shape[0]), int(shape[1])
    if not os.path.isfile(path):
        raise MaskFileError(f"mask {path}: no such file (expected <mask_dir>/<image stem>.png)")
    try:
        with Image.open(path) as im:
            fmt = im.format
            im.load()
            mode = im.mode
            a = np.asarray(im.convert("RGBA") if mode in ("P", "PA") else im)
    except Exception as e:  # noqa: BLE001 - PIL raises many types; one line for all
        why = (str(e).splitlines() or [""])[0]
        raise MaskFileError(f"mask {path}: cannot decode ({type(e).__name__}: {why})") from None
    if fmt != "PNG":
        raise MaskFileError(f"mask {path}: expected a PNG, got {fmt}")
    if a.ndim == 3 and a.shape[-1] in (2, 4):  # LA / RGBA: colour counts only where opaque
        a = np.any(a[..., :-1] != 0, axis=-1) & (a[..., -1] != 0)
    elif a.ndim == 3:
        a = np.any(a != 0, axis=-1)
    elif a.ndim != 2:
        raise MaskShapeError(f"mask {path}: unsupported layout {a.shape} (mode {mode})")
    if a.shape != (h, w):
        raise MaskShapeError(f"mask {path}: size {a.shape[1]}x{a.shape[0]} (WxH) differs from the image's {w}x{h}")
    return np.asarray(a != 0)


def importance_weights(mask, eps: float = IMPORTANCE_EPS) -> np.ndarray:
    """The t_a map of the weighted MS-SSIM (Akutsu et al. 2020, seed 002, eq. 3) from a mask.

    ``mask``: (H, W) or (H, W, 1), bool or float in [0, 1] (soft masks allowed). Then
    r = ε + (1 − ε)·mask, i.e. a marked pixel weighs 1 and the background ε (the **ε floor**, so
    every pixel keeps some weight and Σ r > 0), and t_a = r / mean(r) (**mean 1**). Hence:

    * a constant mask (all False, all True, any constant) gives t_a ≡ 1 exactly, and
      ``weighted_ms_ssim`` with t_a ≡ 1 is MS-SSIM (it divides by Σω, so the scale of t_a does not
      matter; mean 1 makes maps of different images comparable and the loss's own ε = 1e-3 small
      against it);
    * otherwise mean(t_a) = 1, min t_a ≥ ε (r ≥ ε and mean(r) ≤ 1), and a marked pixel weighs 1/ε
      times a background one. A region covering a fraction f holds f / (f + ε(1 − f)) of the
      total weight (91 % at f = 1 % with ε = 1e-3).

    Returns float32 (H, W, 1)."""
    eps = float(eps)
    if not 0.0 < eps <= 1.0:
        raise LabelError(f"importance eps must be in (0, 1], got {eps}")
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise LabelError(f"expected an (H, W) or (H, W, 1) mask, got shape {m.shape}")
    m = m.astype(np.float64)
    if m.size == 0 or not np.all((m >= 0) & (m <= 1)):
        raise LabelError("mask values must lie in [0, 1] (and the mask must not be empty)")
    if np.all(m == m.flat[0]):
        return np.ones(m.shape + (1,), np.float32)
    r = eps + (1.0 - eps) * m
    return (r / r.mean()).astype(np.float32)[..., None]


def precompute_masks(image_spec: str, out_dir: str, *, faces: bool = True, text: bool = True,
                     overwrite: bool = False, progress: bool = True) -> list[str]:
    """Write face | text masks (8-bit grey PNG, 255 = important) of every image under
    ``image_spec`` (a folder or file) to :func:`mask_path` under ``out_dir``; returns the paths
    written. Refuses to write into the shared data folder (``LIC_JAX_SHARED``, /work/shared) or
    into the image folder itself; skips existing masks unless ``overwrite``."""
    from PIL import Image
    from tqdm import tqdm

    from .input_pipeline import list_images

    out = os.path.realpath(out_dir)
    root = os.path.realpath(image_spec)
    forbidden = {os.path.realpath(p) for p in (os.environ.get("LIC_JAX_SHARED"), "/work/shared") if p}
    for f in forbidden:
        if out == f or out.startswith(f + os.sep):
            raise LabelError(f"refusing to write masks into the shared data folder {f}")
    if os.path.isdir(root) and out == root:
        raise LabelError("the mask folder must differ from the image folder")
    files = list_images(image_spec)
    if not files:
        raise LabelError(f"no images under {image_spec}")
    written = []
    for f in tqdm(files, desc="masks", unit="img", disable=not progress):
        dst = mask_path(f, image_spec, out_dir)
        if os.path.exists(dst) and not overwrite:
            continue
        with Image.open(f) as im:
            img = np.asarray(im.convert("RGB"))
        m = detect_mask(img, faces=faces, text=text)
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        Image.fromarray(m.astype(np.uint8) * 255).save(dst)
        written.append(dst)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lic_jax.train.labels", description=(
        "Precompute face | text importance masks (t_a, Akutsu 2020) of an image folder."))
    ap.add_argument("images", help="image folder (searched recursively) or file")
    ap.add_argument("--out", required=True, help="mask folder (<out>/<relative path>.png)")
    ap.add_argument("--no-faces", action="store_true")
    ap.add_argument("--no-text", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    try:
        n = precompute_masks(a.images, a.out, faces=not a.no_faces, text=not a.no_text, overwrite=a.overwrite)
    except (LabelError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(n)} masks to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
