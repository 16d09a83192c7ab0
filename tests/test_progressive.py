"""Progressive files (issue 15, increment 2b; docs/PROGRESSIVE.md, docs/FORMAT.md §8): the
``progressive`` coder of toderici2017, its binary context model and the version-2 container.

A tiny model (GRU, additive, width 1/16, 4 iterations, random init) and a bit context model
fitted for 60 steps on its codes of generated images; one generated 30×45 image (padded to
32×48: the edge padding and the crop are exercised). Every "broken once" note records a
deliberate break of the code under test and that the test then failed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _helpers import pattern_image, random_variables
from lic_jax.coding import Codec, container
from lic_jax.coding.errors import CorruptFileError, LicError, LimitError, ModelMismatchError, TruncatedFileError
from lic_jax.coding.progressive import ProgressiveCodec
from lic_jax.entropy_models import binary as BN
from lic_jax.models import get_model
from lic_jax.models import toderici2017 as T

K = 4


_image = pattern_image  # tests/_helpers.py


@pytest.fixture(scope="module")
def setup():
    model, spec = get_model("toderici2017", cell="gru", mode="additive", width=1 / 16, iterations=K)
    variables = random_variables(model, 0)  # numpy draws: no model.init compile
    train = [_image(64, 64, s).astype(np.float32) / 255.0 for s in range(3)]
    bits = BN.collect_bits(model, variables, train, K, jax.random.key(1), crop=64, count=6)
    ctx_model, ctx_params, hist = BN.fit(bits, jax.random.key(2), steps=60)
    codec = Codec(model, spec, variables, context=(ctx_model, ctx_params))
    img = _image(30, 45, 9)
    enc = codec.encode(img)
    return dict(model=model, spec=spec, variables=variables, codec=codec, img=img, enc=enc, ctx=(ctx_model, ctx_params),
                hist=hist)


def _unroll_reference(model, variables, img):
    """The model's reconstructions computed here, independently of the codec: edge padding
    (centred) to 32×48, ``toderici2017.unroll`` in eval mode, crop, clip."""
    x = np.pad(img.astype(np.float32) / np.float32(255.0), ((1, 1), (1, 2), (0, 0)), mode="edge")[None]
    out = jax.jit(lambda v, x: T.unroll(model, v, x, K))(variables, jnp.asarray(x))
    recs = np.clip(np.asarray(out["x_hat"])[:, 0, 1:31, 1:46], 0.0, 1.0).astype(np.float32)
    return np.asarray(out["bits"])[:, 0], recs


def test_codec_dispatch_and_fit(setup):
    """``Codec(...)`` of a model whose record names the 'progressive' coder is a ProgressiveCodec,
    and the context model learned (bits per bit fell; measured 1.13 → ~0.1 on these codes)."""
    assert isinstance(setup["codec"], ProgressiveCodec)
    assert setup["hist"][-1] < 0.7 * setup["hist"][0]


def test_round_trip_bits_exact(setup):
    """Decoded bits == the encoder's bits == the bits of ``unroll`` computed independently.
    Broken once: the decoder flipped the first decoded bit of channel 3 of every row (a
    decoder-only change) → the bits differed, failed."""
    codec, enc = setup["codec"], setup["enc"]
    ref_bits, _ = _unroll_reference(setup["model"], setup["variables"], setup["img"])
    np.testing.assert_array_equal(enc.bits, ref_bits)
    got = codec.decode(enc.data, output="latents")[0]
    np.testing.assert_array_equal(got, enc.bits)


def test_every_prefix_decodes_to_the_k_iteration_reconstruction(setup):
    """A file cut after iteration k decodes to exactly (bit-identical float32) ``unroll``'s k-th
    reconstruction, cropped and clipped; ``iterations=k`` on the whole file gives the same.
    Broken once: the decoder skipped decode_iteration for the first segment (carry not advanced)
    → failed (at k = 1: no reconstruction at all). Measured max |difference| 0.0 (CPU)."""
    codec, enc = setup["codec"], setup["enc"]
    _, recs = _unroll_reference(setup["model"], setup["variables"], setup["img"])
    assert len(enc.offsets) == K and enc.offsets[-1] == len(enc.data)
    for k in range(1, K + 1):
        got = codec.decompress(enc.prefix(k), output="float")
        np.testing.assert_array_equal(got, recs[k - 1], err_msg=f"prefix {k}")
        np.testing.assert_array_equal(codec.decompress(enc.data, output="float", iterations=k), got)
    assert np.mean(np.abs(recs[-1] - recs[0])) > 0  # the iterations do change the image


def test_mid_iteration_cut_is_a_one_line_error(setup):
    """Every cut that is not an iteration boundary (inside the header or a segment) raises a
    one-line TruncatedFileError (header cuts) naming the iteration, before any decoding.
    Broken once: unpack_progressive accepted a segment whose payload ran past the end (only the
    varint checked against the file's end) → a cut crashed with struct.error, failed."""
    codec, enc = setup["codec"], setup["enc"]
    header_size = enc.offsets[0] - (len(container._varint(enc.header.stream_lengths[0]))
                                    + enc.header.stream_lengths[0] + 4)
    valid = set(enc.offsets)
    for n in range(1, len(enc.data)):
        if n in valid:
            continue
        with pytest.raises(LicError) as e:
            codec.decompress(enc.data[:n])
        msg = str(e.value)
        assert "\n" not in msg
        assert isinstance(e.value, TruncatedFileError) or n < header_size, (n, msg)
        if n > header_size:
            assert "iteration" in msg and "cut" in msg, msg
    assert "no complete iteration" in str(pytest.raises(TruncatedFileError, codec.decompress,
                                                        enc.data[:header_size]).value)


def test_corrupt_byte_is_a_crc_error(setup):
    """A flipped bit anywhere after the magic/version bytes is a one-line LicError; inside a
    segment's payload it is the segment's CRC error. Broken once: the segment CRC covered only
    the length varint → payload flips decoded silently to other bits, failed."""
    codec, enc = setup["codec"], setup["enc"]
    data = bytearray(enc.data)
    starts = [0] + list(enc.offsets[:-1])
    hs = starts[0] = enc.offsets[0] - (len(container._varint(enc.header.stream_lengths[0]))
                                       + enc.header.stream_lengths[0] + 4)
    for pos in range(4, len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(LicError) as e:
            codec.decompress(bytes(bad))
        assert "\n" not in str(e.value)
        if pos < hs - 4:
            continue
        assert "CRC-32" in str(e.value) or isinstance(e.value, (LimitError, TruncatedFileError)), (pos, str(e.value))
    # payload bytes specifically: the segment's CRC
    for t, (s, n) in enumerate(zip(starts, enc.header.stream_lengths)):
        pos = s + len(container._varint(n)) + n // 2
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(CorruptFileError, match=f"iteration {t + 1}"):
            codec.decompress(bytes(bad))


def test_bytes_match_the_cross_entropy(setup):
    """Each segment's bytes (method byte + stream) are within 1 % + 8 bytes of Σ −log2 p of the quantised
    probabilities (range-coder flush: up to two 32-bit words). Measured on the 48×32 grid of
    an untrained context model: 7484 bytes for an estimate of 7482.4 (0.02 %); here the
    segments are ~25 bytes, so the constant dominates. Broken once: the encoder passed p(0)
    instead of p(1) to constriction → a segment of 84 bytes for an estimate of 22.9, failed."""
    enc = setup["enc"]
    for n, ideal in zip(enc.header.stream_lengths, enc.segment_bits):
        assert n <= ideal / 8 * 1.01 + 8, (n, ideal / 8)
        assert n >= ideal / 8 * 0.99 - 8, (n, ideal / 8)


def test_context_model_is_causal(setup):
    """Flipping bit number n (in coding order: iteration, row, channel, column) changes no
    probability of a bit coded before it, nor its own, in the coder's exact arithmetic
    (row_frequencies) and in the training model (logits_grid, exact equality as well). Broken
    once: the ``above`` window included row i itself (rows i−1, i) → earlier bits of row i
    changed, failed; and once: the channel mask c′ ≤ c → the flipped bit's own logit changed, failed."""
    cm, cp = setup["ctx"]
    rng = np.random.default_rng(3)
    Tn, h, w, C = 2, 3, 4, 32
    bits = np.where(rng.random((Tn, h, w, C)) < 0.5, 1.0, -1.0).astype(np.float32)

    def order(t, i, j, c):
        return ((t * h + i) * C + c) * w + j

    def coder_freqs(b):
        out = np.zeros(b.shape, np.int64)
        for t in range(Tn):
            cur_pad = np.asarray(BN.pad_above(jnp.asarray(b[t])))
            prev_pad = np.asarray(BN.pad_prev(jnp.asarray(b[t - 1] if t else np.zeros_like(b[0]))))
            for i in range(h):
                rows, prows = cur_pad[i:i + 2], prev_pad[i:i + 3]
                hid = BN.row_hidden(cm, cp, rows, prows, t)
                st = BN.RowState(cp, hid)
                for c in range(C):
                    out[t, i, :, c] = st.frequencies(c)
                    st.add(c, b[t, i, :, c])
        return out

    base_f = coder_freqs(bits)
    base_l = np.asarray(BN.logits_grid(cm, cp, bits[:, None]))[:, 0]
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in (Tn, h, w, C)], indexing="ij"), -1)
    ords = order(idx[..., 0], idx[..., 1], idx[..., 2], idx[..., 3])
    changed_later = 0
    for (t, i, j, c) in [(0, 1, 2, 5), (0, 2, 0, 0), (1, 0, 3, 31), (1, 1, 1, 17), (0, 0, 0, 0)]:
        b2 = bits.copy()
        b2[t, i, j, c] *= -1
        f2 = coder_freqs(b2)
        l2 = np.asarray(BN.logits_grid(cm, cp, b2[:, None]))[:, 0]
        early = ords <= order(t, i, j, c)
        np.testing.assert_array_equal(f2[early], base_f[early])
        np.testing.assert_array_equal(l2[early], base_l[early])
        changed_later += int(np.sum(f2[~early] != base_f[~early]))
    assert changed_later > 0  # the context is used at all
    # the coder's probabilities are the training model's, up to float32 rounding and the 2⁻¹⁶ grid
    p = 1.0 / (1.0 + np.exp(-base_l.astype(np.float64)))
    assert np.max(np.abs(base_f / 65536.0 - np.clip(p, 1 / 65536, 1 - 1 / 65536))) < 3e-5


def test_other_context_model_or_weights_refused(setup):
    """A codec with another context model (or other weights) refuses the file by fingerprint."""
    s = setup
    other = Codec(s["model"], s["spec"], s["variables"], context=BN.init_params(jax.random.key(5)))
    with pytest.raises(ModelMismatchError, match="context model"):
        other.decompress(s["enc"].data)


def test_limits_before_allocation(setup):
    """A forged 65535×65535 header is refused by max_pixels before decoding; a segment that
    declares more bytes than its bits can take is a LimitError before it is read."""
    codec, enc = setup["codec"], setup["enc"]
    h = enc.header
    import dataclasses

    big = dataclasses.replace(h, height=65535, width=65535)
    data = container.pack_progressive(big, [b"\0" * 4])
    with pytest.raises(LimitError, match="exceeds the limit"):
        codec.decompress(data)
    huge = container.pack_progressive(h, [b"\0" * (container.max_segment_bytes(h.height, h.width) + 4)])
    with pytest.raises(LimitError, match="segment declares"):
        codec.decompress(huge)


def test_target_bpp_cuts_at_real_bytes(setup):
    """encode_at_bpp keeps the longest prefix whose real size fits the target (≥ 1 iteration)."""
    codec, enc, img = setup["codec"], setup["enc"], setup["img"]
    px = img.shape[0] * img.shape[1]
    target = 8.0 * enc.offsets[1] / px + 1e-6
    r = codec.encode_at_bpp(img, target)
    assert r.data == enc.prefix(2) and r.iterations == 2
    assert codec.encode_at_bpp(img, 1e-3).iterations == 1


def test_cli_iterations_target_bpp_info_and_cuts(setup, tmp_path, capsys):
    """``lic compress --iterations K`` / ``--target-bpp B``, ``lic decompress --iterations k``
    (= the k-iteration image), ``lic info`` lists the per-iteration offsets, and a file cut
    mid-iteration is exit status 1 with one stderr line and no output file. Broken once: decompress
    ignored --iterations (decoded all 3) → the image differed, failed."""
    import json

    from PIL import Image

    from lic_jax.artifact import save_artifact
    from lic_jax.cli import main
    from lic_jax.coding import to_uint8

    s = setup
    art = tmp_path / "art"
    save_artifact(str(art), s["spec"], s["variables"], tables=False)
    np.savez(art / "bitcoder.npz", **BN.params_to_arrays(s["ctx"][1]))
    src, enc_path, dec = tmp_path / "in.png", tmp_path / "x.lic", tmp_path / "out.png"
    Image.fromarray(s["img"]).save(src)
    assert main(["compress", str(src), str(enc_path), "--checkpoint", str(art), "--iterations", "3", "-q"]) == 0
    data = enc_path.read_bytes()
    assert data == s["enc"].prefix(3)  # same model, context model and image: the codec's bytes
    capsys.readouterr()
    assert main(["info", str(enc_path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["iterations"] == 3 and d["iteration_offsets"] == list(s["enc"].offsets[:3])
    assert main(["info", str(enc_path)]) == 0
    assert "ending at byte offsets" in capsys.readouterr().out
    assert main(["decompress", str(enc_path), str(dec), "--checkpoint", str(art), "--iterations", "2", "-q"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(dec)), to_uint8(s["codec"].decompress(s["enc"].prefix(2),
                                                                                               output="float")))
    cut = tmp_path / "cut.lic"
    cut.write_bytes(data[: s["enc"].offsets[1] + 3])
    bad_out = tmp_path / "bad.png"
    capsys.readouterr()
    assert main(["decompress", str(cut), str(bad_out), "--checkpoint", str(art)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cut inside iteration 3" in err, err
    assert not bad_out.exists()
    px = s["img"].shape[0] * s["img"].shape[1]
    assert main(["compress", str(src), str(enc_path), "--checkpoint", str(art), "--target-bpp",
                 str(8.0 * s["enc"].offsets[1] / px + 1e-6), "-q"]) == 0
    assert enc_path.read_bytes() == s["enc"].prefix(2)
    capsys.readouterr()
    assert main(["compress", str(src), str(enc_path), "--checkpoint", str(art), "--lmbda", "0.01", "-q"]) != 0
    assert "not λ" in capsys.readouterr().err


def test_raw_fallback_bounds_every_segment(setup):
    """With a context model that is confidently wrong (p(+1) = 1 − 2⁻¹⁶ everywhere), every segment
    is stored raw: method byte 1 + the packed bits (= raw bits + 1 byte), and still decodes
    exactly; a raw segment of the wrong length is a CorruptFileError. Broken once: the encoder
    never fell back (``>=`` → ``> 10**9``) → segments of ~7× raw, failed."""
    import jax.tree_util as jtu

    s = setup
    cm, cp = s["ctx"]
    bad = jtu.tree_map(lambda a: a, cp)
    bad["params"]["u"] = jnp.zeros_like(cp["params"]["u"])
    bad["params"]["v"] = jnp.full_like(cp["params"]["v"], 30.0)
    codec = Codec(s["model"], s["spec"], s["variables"], context=(cm, bad))
    enc = codec.encode(s["img"])
    raw = 2 * 3 * 32 // 8
    assert list(enc.header.stream_lengths) == [raw + 1] * K
    np.testing.assert_array_equal(codec.decode(enc.data, output="latents")[0], enc.bits)
    h = enc.header
    forged = container.pack_progressive(h, [bytes([1]) + b"\0" * (raw - 1)])
    with pytest.raises(CorruptFileError, match="raw segment"):
        codec.decompress(forged)
    with pytest.raises(CorruptFileError, match="method"):
        codec.decompress(container.pack_progressive(h, [bytes([7]) + b"\0" * 8]))
