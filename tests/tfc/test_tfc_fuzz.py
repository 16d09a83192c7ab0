"""Structure-aware fuzzing through the TFC range decoder (``lic_jax.coding.fuzz``; the
constriction half is tests/test_fuzz.py). Runs in the ``[tfc]`` environment::

    nice -n 10 .venv-tfc/bin/python -m pytest -q tests/tfc/test_tfc_fuzz.py

Forged streams (valid header and CRC) for every model kind must end in an image or a documented
LicError within 2 s; at least ``LIC_FUZZ_REACH`` (2000) cases reach the TFC decoder. The
``coder`` mutation also hands TFC streams to the constriction decoder and constriction streams to
the TFC decoder.
"""

from __future__ import annotations

from conftest import require

require("tensorflow_compression")

import test_fuzz as F  # noqa: E402

from lic_jax.coding import fuzz  # noqa: E402


def test_structured_fuzz_reaches_the_tfc_decoder():
    s = F.structured_fuzz("tfc", seed=1)
    assert {k.split(":")[0] for k in s["outcomes"]} == set(fuzz.MUTATIONS)
    # the other coder's streams reach a decoder here (both coders are installed)
    assert any(k.startswith("coder:") and not k.endswith("CoderUnavailableError") for k in s["outcomes"])


def test_tfc_files_satisfy_the_stream_bounds():
    """TFC streams are never padded (limits.pad_streams): they must meet the lower bound by
    themselves, within the decoder's 32-bit slack, for every model kind."""
    import numpy as np

    import test_coding_support as S
    import test_limits as L

    from lic_jax.coding import container, limits

    rng = np.random.default_rng(0)
    for name in L.KINDS:
        c = L.kind_codec(name, "tfc")
        for img in (S.kodak_image(9)[:64, :60], np.full((60, 64, 3), 128, np.uint8),
                    rng.integers(0, 256, (49, 56, 3), dtype=np.uint8)):
            data = c.compress(img)
            h, streams = container.unpack(data)
            for b, s in zip(limits.check_streams(c, h), streams):
                assert 8 * len(s) >= b.min_bits - limits.MIN_SLACK_BITS, (name, b, len(s))
