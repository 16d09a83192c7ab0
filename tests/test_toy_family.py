"""A new model family plugs in with one module and one registry entry (issue 11).

``tests/toys/jpeg_payload.py`` (a ComCNN/JPEG/RecCNN-shaped toy with two decoders) is registered
temporarily and goes through the unchanged ``Codec``, container, artifact and CLI code: the
payload is a real JPEG that Pillow decodes independently, the decoder's latents equal the
encoder's, the file asks for the decoder chosen at encoding, and an unregistered model is an
error rather than an id-0 file.
"""

from __future__ import annotations

import io

import jax
import numpy as np
import pytest
from PIL import Image

from lic_jax.artifact import load_artifact, save_artifact
from lic_jax.coding import Codec, CorruptFileError, container
from lic_jax.models.registry import ModelSpec, registered
from toys.jpeg_payload import RECORD, JpegPayloadToy


def _image():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:37, 0:50]
    base = np.stack([xx * 4, yy * 6, (xx + yy) * 2], -1) + rng.integers(0, 20, (37, 50, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _codec():
    model = JpegPayloadToy()
    v = model.init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 3), np.float32))
    return Codec(model, ModelSpec(RECORD.name, None, {}), {"params": v["params"]}), v


def test_toy_family_codes_through_the_unchanged_pipeline(tmp_path):
    img = _image()
    with registered(RECORD):
        codec, v = _codec()
        enc = codec.encode(img)
        header, streams = container.unpack(enc.data)
        assert header.model_id == 200 and header.decoder == 0 and len(streams) == 1
        # the payload is a standard JPEG of the half-size latent image; Pillow decodes it on its own
        jpeg = Image.open(io.BytesIO(streams[0]))
        assert jpeg.format == "JPEG" and jpeg.size == (25, 19)
        np.testing.assert_array_equal(np.asarray(jpeg.convert("RGB")), enc.latents.y_symbols.astype(np.uint8))
        out, lat, _ = codec.decode(enc.data)
        np.testing.assert_array_equal(lat.y_symbols, enc.latents.y_symbols)
        assert out.shape == img.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, codec.reconstruct(enc.latents.y_hat, 37, 50))
        # decoders as a choice: the file records the one asked for; a caller may override it
        data2 = codec.compress(img, decoder="detail_synthesis")
        assert container.unpack(data2)[0].decoder == 1
        detail = codec.decompress(data2)
        assert not np.array_equal(detail, out)
        np.testing.assert_array_equal(codec.decompress(data2, decoder="synthesis"), out)
        with pytest.raises(ValueError, match="no decoder"):
            codec.compress(img, decoder="nope")
        # artifact save / load (no coding tables) and a damaged payload
        save_artifact(tmp_path / "toy", ModelSpec(RECORD.name, None, {}), {"params": v["params"]})
        art = load_artifact(tmp_path / "toy")
        np.testing.assert_array_equal(Codec.from_artifact(art).decompress(enc.data), out)
        h, s = container.unpack(enc.data)
        bad = container.pack(h, [s[0][: len(s[0]) // 2]])
        with pytest.raises(CorruptFileError):
            codec.decompress(bad)
    with pytest.raises(ValueError, match="not a registered"):
        _codec()
