"""An opaque external stream: the latent is an image written by a standard codec (seed 004's
ComCNN → JPEG → RecCNN; Jiang et al. 2017 §3, Fig. 1).

The model's ``analysis`` returns y in [0, 1] of shape (H', W', C), C ∈ {1, 3}; this coder rounds
it to 8 bits, writes it with the codec the model names (``payload_codec``: 'jpeg' at
``payload_quality``, or 'png') and decodes that stream again, so that the encoder's ŷ is exactly
the decoder's: ``y_symbols`` are the decoded 8-bit values, ``y_hat = y_symbols / 255``.
Stream layout: one stream, the standard file as it is (a JPEG can be cut out of a ``.lic``).
"""

from __future__ import annotations

import io as _io

import numpy as np
from PIL import Image

from ..errors import CorruptFileError
from .. import limits
from .base import LatentCoder, Latents, LatentShapes, check_finite

__all__ = ["ExternalCoder", "write_payload", "read_payload"]

_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


def write_payload(a: np.ndarray, codec: str, quality: int) -> bytes:
    """uint8 (H, W, C) → the bytes of one standard file (4:4:4 JPEG, no metadata)."""
    img = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
    buf = _io.BytesIO()
    if codec == "jpeg":
        img.save(buf, "JPEG", quality=int(quality), subsampling=0, optimize=False)
    else:
        img.save(buf, _FORMATS[codec])
    return buf.getvalue()


def read_payload(data: bytes, shape, codec: str) -> np.ndarray:
    """The decoded uint8 (H, W, C); CorruptFileError unless it is a ``codec`` file of that shape."""
    H, W, C = shape
    try:
        with Image.open(_io.BytesIO(data), formats=[_FORMATS[codec]]) as img:
            if img.size != (W, H):
                raise CorruptFileError(f"corrupt file: the {codec} payload is {img.size[0]}x{img.size[1]}, "
                                       f"expected {W}x{H}")
            img = img.convert("L" if C == 1 else "RGB")
            a = np.asarray(img, np.uint8)
    except CorruptFileError:
        raise
    except Exception as e:  # Pillow raises many types for a damaged stream
        raise CorruptFileError(f"corrupt {codec} payload ({type(e).__name__}: {e})") from None
    return a.reshape(H, W, C)


class ExternalCoder(LatentCoder):
    kind = "external"
    hyper = False
    # the payload is a standard file: no network decides a distribution
    portable = True

    def __init__(self, model, cpu_vars, tables):
        super().__init__(model, cpu_vars, tables)
        self.codec = str(getattr(model, "payload_codec", "jpeg"))
        if self.codec not in _FORMATS:
            raise ValueError(f"payload_codec must be one of {sorted(_FORMATS)}, got {self.codec!r}")
        self.quality = int(getattr(model, "payload_quality", 75))

    @classmethod
    def build_tables(cls, model, params):
        return {}

    def num_streams(self):
        return 1

    def run(self, io, shapes: LatentShapes, y=None, z=None) -> Latents:
        if io.encoding:
            check_finite(np.asarray(y), "latents")
            a = np.round(np.clip(np.asarray(y, np.float32), 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
            data = write_payload(a, self.codec, self.quality)
            io.add_stream(data, 8.0 * len(data))
        else:
            data = io.next_stream()
        q = read_payload(data, shapes.y, self.codec).astype(np.int32)
        return Latents(q, q.astype(np.float32) / np.float32(255.0))

    def stream_bounds(self, shapes: LatentShapes):
        n = int(np.prod(shapes.y))
        return [limits.stream_bound("payload", n, 8.0)]  # at least one byte; at most the symbol bound
