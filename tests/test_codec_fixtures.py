"""Files written before the issue-11 redesign still decode bit for bit (tests/data/codec_fixtures).

The fixtures (``scripts/make_codec_fixtures.py``) hold, per registered model, a small artifact,
``.lic`` files of a generated 45×38 image (RGB and grey; two λ for variable-rate models) and the
symbols and pixels the decoder of that time returned. Decoding must give exactly those, and
encoding the same image again must give the same bytes. Measured on the writing machine: 0
differing symbols, pixels and bytes; any change of the coding path (stream layout, symbol
centring, table index, wavefront order, padding rule, header) breaks it. Progressive files
(toderici2017, format version 2, added with issue 15) pin the decoded bits instead of symbols.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from lic_jax.coding import Codec

HERE = os.path.dirname(__file__)
FIX = os.path.join(HERE, "data", "codec_fixtures")
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))
from make_codec_fixtures import image  # noqa: E402  (the generated test image, not a copy of data)

INDEX = json.load(open(os.path.join(FIX, "index.json")))
# coded models whose files are not pinned here (none today: akutsu2020's case was added with
# ``scripts/make_codec_fixtures.py --add akutsu2020`` after its coder landed, issue 20)
NO_FIXTURES: set = set()


def test_every_registered_model_has_fixtures():
    from lic_jax.models.registry import MODELS, REGISTRY

    # a record without a latent coder (coder 'none'; none today, test_registry.test_coderless_record)
    # writes no files; NO_FIXTURES: coded models whose files are not pinned here yet
    assert sorted(INDEX["cases"]) == sorted(n for n in MODELS if REGISTRY[n].coder != "none" and n not in NO_FIXTURES)


@pytest.mark.parametrize("name", sorted(INDEX["cases"]))
def test_fixture_files_decode_bit_for_bit(name):
    d = os.path.join(FIX, name)
    codec = Codec.from_artifact(os.path.join(d, "artifact"))
    expected = np.load(os.path.join(d, "expected.npz"))
    for f in INDEX["cases"][name]["files"]:
        tag = f["file"][: -len(".lic")]
        data = open(os.path.join(d, f["file"]), "rb").read()
        img, lat, header = codec.decode(data)
        if f"{tag}_bits" in expected:  # progressive files (format version 2): the decoded bits
            np.testing.assert_array_equal(lat, expected[f"{tag}_bits"], err_msg=f"{name} {tag} bits")
            np.testing.assert_array_equal(img, expected[f"{tag}_image"], err_msg=f"{name} {tag} pixels")
            codec.record_environment = False
            assert codec.compress(image(f["grey"])) == data, f"{name} {tag}: encoder output changed"
            continue
        np.testing.assert_array_equal(lat.y_symbols, expected[f"{tag}_y_symbols"], err_msg=f"{name} {tag} y")
        if f"{tag}_z_symbols" in expected:
            np.testing.assert_array_equal(lat.z_symbols, expected[f"{tag}_z_symbols"], err_msg=f"{name} {tag} z")
        np.testing.assert_array_equal(img, expected[f"{tag}_image"], err_msg=f"{name} {tag} pixels")
        codec.record_environment = False  # the fixtures predate the environment field (flags bit 6)
        assert codec.compress(image(f["grey"]), lmbda=f["lmbda"]) == data, f"{name} {tag}: encoder output changed"
