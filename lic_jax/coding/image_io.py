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
import stat
import tempfile

import numpy as np

from .errors import LimitError, UnsupportedImageError

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


def read_image(path, drop_alpha: bool = False, warn=None, max_pixels: int | None = None) -> np.ndarray:
    """uint8 array: (H, W, 3) RGB or (H, W) greyscale. ``warn(msg)`` receives one-line warnings.
    Images with more than ``max_pixels`` pixels (None: ``limits.DEFAULT_MAX_PIXELS``) are refused
    with a LimitError from the file's header, before the pixels are decoded."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from .limits import check_pixels

    warn = warn or (lambda msg: None)
    name = os.fspath(path)
    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning (> 89 MP): our limit speaks instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(name)
    except Image.DecompressionBombError:
        raise LimitError(f"{name}: image exceeds Pillow's decompression-bomb limit "
                         f"({Image.MAX_IMAGE_PIXELS * 2} pixels); lic cannot read it") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"{name}: not an image file Pillow can read") from None
    except OSError as e:
        raise UnsupportedImageError(f"{name}: cannot open image ({e})") from None
    with im:
        check_pixels(im.size[1], im.size[0], max_pixels, f"{name}: input image")
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


def _umask() -> int:
    """The process umask, read without changing it where Linux exposes it (/proc), else by the
    classic set-and-restore."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: str) -> int:
    """The mode ``cp`` gives the destination: an existing file keeps its mode, a new one gets
    0666 minus the umask (mkstemp's 0600 must not leak into the output)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path next to ``path``; on success rename it to ``path``, else delete it.
    The result gets the permissions a new file would get (0666 & ~umask), or keeps those of the
    file it replaces."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode(path))
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
