"""Real bitstreams: coding tables, entropy-coder backends, the ``.lic`` container and ``Codec``.

    from lic_jax.coding import Codec
    codec = Codec.from_artifact(path)            # or Codec(model, spec, variables, coder="tfc")
    data = codec.compress(img_uint8)             # bytes
    img = codec.decompress(data)                 # uint8; output="float" for the float reconstruction
    data = codec.compress(img_uint8, lmbda=0.01) # variable-rate (mae-*) models: any λ …
    r = encode_at_bpp(codec, img_uint8, 0.5)     # … or the λ whose file is 0.5 bpp (±3 %)

Format and guarantees: docs/FORMAT.md.
"""

from .backends import available_backends, get_backend
from .codec import Codec, Decoded, Encoded, Latents, to_uint8, weights_fingerprint
from .rate_control import RateControlResult, encode_at_bpp
from .container import FORMAT_VERSION, MODEL_IDS, Header
from .errors import (
    CoderUnavailableError,
    CorruptFileError,
    LicError,
    LimitError,
    ModelMismatchError,
    NotALicFileError,
    TableError,
    TruncatedFileError,
    UnsupportedImageError,
    UnsupportedVersionError,
)
from .limits import DEFAULT_MAX_PIXELS
from .tables import PRECISION, CdfTable, build_tables

__all__ = [
    "Codec",
    "Encoded",
    "Decoded",
    "Latents",
    "encode_at_bpp",
    "RateControlResult",
    "to_uint8",
    "weights_fingerprint",
    "available_backends",
    "get_backend",
    "build_tables",
    "CdfTable",
    "PRECISION",
    "FORMAT_VERSION",
    "MODEL_IDS",
    "Header",
    "LicError",
    "NotALicFileError",
    "UnsupportedVersionError",
    "TruncatedFileError",
    "CorruptFileError",
    "ModelMismatchError",
    "CoderUnavailableError",
    "UnsupportedImageError",
    "TableError",
    "LimitError",
    "DEFAULT_MAX_PIXELS",
]
