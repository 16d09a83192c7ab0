"""Reading and writing image files for ``lic`` (docs/FORMAT.md §5, input conversion).

* RGB (8 bit): as is.
* greyscale ('L', '1'): coded as RGB with the grey value replicated; the header stores
  channels = 1 and decoding returns a greyscale image (mean of the reconstructed channels).
* palette ('P'): converted to RGB (palette with transparency: treated as alpha, below).
* alpha ('RGBA', 'LA', 'PA', 'P' + transparency): refused with a message, unless the alpha
  channel is fully opaque (then dropped silently, nothing is lost) or ``drop_alpha=True``
  (``--drop-alpha``: the alpha channel is discarded, colour values kept as stored; no
  compositing).
* 16-bit ('I;16*', 16-bit PNGs): converted to 8 bits with a warning — greyscale by
  ``round(v / 257)``, RGB by Pillow's loader (the most significant byte); the header stores
  bit depth 8 (what is reconstructed).
* CMYK, YCbCr, LAB, HSV: converted to RGB by Pillow (with a warning).
* anything else (float 'F', 32-bit 'I' beyond 16 bits, multi-frame files): refused.

Outputs are written atomically: a temporary file in the destination folder, renamed over the
destination (``os.replace``) only when complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

from .errors import UnsupportedImageError

__all__ = ["read_image", "write_image", "atomic_write_bytes", "atomic_output"]


def _png_bit_depth(path) -> int | None:
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    if len(head) >= 25 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return None


def read_image(path, drop_alpha: bool = False, warn=None) -> np.ndarray:
    """uint8 array: (H, W, 3) RGB or (H, W) greyscale. ``warn(msg)`` receives one-line warnings."""
    from PIL import Image, UnidentifiedImageError

    warn = warn or (lambda msg: None)
    name = os.fspath(path)
    try:
        im = Image.open(name)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"{name}: not an image file Pillow can read") from None
    except OSError as e:
        raise UnsupportedImageError(f"{name}: cannot open image ({e})") from None
    with im:
        if getattr(im, "n_frames", 1) > 1:
            raise UnsupportedImageError(f"{name}: multi-frame images are not supported")
        try:
            im.load()
        except (OSError, ValueError, SyntaxError) as e:
            raise UnsupportedImageError(f"{name}: damaged image file ({e})") from None
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode == "PA":
            im = im.convert("RGBA")
        elif mode == "1":
            im = im.convert("L")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            warn(f"{name}: {mode} image converted to RGB")
            im = im.convert("RGB")
        elif mode.startswith("I;16") or mode == "I":
            a = np.asarray(im).astype(np.int64)
            if a.size and (a.min() < 0 or a.max() > 65535):
                raise UnsupportedImageError(f"{name}: {mode} image with values outside 0 … 65535 is not supported")
            warn(f"{name}: 16-bit greyscale converted to 8 bits (round(v / 257))")
            return ((a + 128) // 257).astype(np.uint8)
        elif mode not in ("RGB", "RGBA", "L", "LA"):
            raise UnsupportedImageError(f"{name}: unsupported image mode {mode!r}")
        if _png_bit_depth(name) == 16 and im.mode in ("RGB", "RGBA"):
            warn(f"{name}: 16-bit PNG converted to 8 bits (most significant byte)")
        a = np.asarray(im)
    if a.ndim == 3 and a.shape[2] in (2, 4):  # LA / RGBA
        alpha = a[..., -1]
        if not drop_alpha and not np.all(alpha == 255):
            raise UnsupportedImageError(
                f"{name}: image has a (non-opaque) alpha channel; pass --drop-alpha to discard it"
            )
        a = a[..., :-1]
        if a.shape[2] == 1:
            a = a[..., 0]
    if a.dtype != np.uint8:
        raise UnsupportedImageError(f"{name}: unsupported sample type {a.dtype}")
    return np.ascontiguousarray(a)


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path next to ``path``; on success rename it to ``path``, else delete it."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data: bytes):
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_image(path, img: np.ndarray):
    """Write a uint8 (H, W) or (H, W, 3) image; format from the extension (PNG if none known)."""
    from PIL import Image

    path = os.fspath(path)
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "PNG")
    im = Image.fromarray(np.asarray(img, np.uint8), "L" if np.ndim(img) == 2 else "RGB")
    with atomic_output(path) as tmp:
        im.save(tmp, format=fmt)
