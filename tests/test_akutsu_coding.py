"""akutsu2020's codec (issue 20, increment 3; ``lic_jax.coding.latent_coders.attention``,
``Akutsu2020.gaussian_params_step`` / ``synthesis_fused``, ``lic decompress --detail``; docs/AKUTSU.md
"Codec").

One tiny model for the whole module (``width=1/16, blocks=1``: M = 4 latent channels, weights
filled on the host as tests/test_akutsu2020.py does), "energised" as the codec fixtures are
(scripts/make_codec_fixtures.py): the last analysis convolution ×100, so that y spans many symbols
(max |symbol| 9, 84 % non-zero on the 70×45 image), and the σ half of the mixing body's output
bias +6 (σ ≈ 6: random weights otherwise predict σ ≈ 1 for symbols up to ±9, and every such symbol
goes to the escape path, whose cost the model's likelihood does not describe).

Broken on purpose once each (the source edited, the named test run, the edit undone; all failed):

* the cached attention's mask ``arange(N) <= index`` → ``< index`` (position i no longer reads its
  own key/value): test_incremental_step_matches_parallel failed (NaN: an empty softmax at i = 0);
  → ``<= index + 1`` (one unfilled, zero cache slot admitted): it failed with max |Δ| 0.081 against
  the tolerance 1.5e-6.
* μ perturbed by 1e-3 in the decoder only (``_positions``: ``mu_h + 1e-3`` when not encoding):
  test_round_trip_exact failed (decoded ŷ ≠ the encoder's ŷ, symbols still equal), and so did
  test_kodak_round_trips_in_separate_processes (every image, both decoders).
* ``synthesis_fused`` with the mask inverted (``fuse(x_main, x_det, m)``):
  test_detail_decoder_matches_hand_fusion failed.
* ``--detail`` ignored by ``_decoder_choice`` (the file's decoder used): test_cli_detail_and_errors
  failed (the --detail PNG differed from ``decoder='synthesis_fused'``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lic_jax.coding import Codec, container
from lic_jax.models import get_model
from lic_jax.models.base import pad_amounts
from test_akutsu2020 import TINY, _host_init


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    x = np.stack([np.sin(xx / 6 + c) * np.cos(yy / 9 - c) for c in range(3)], -1) * 100 + 128
    return np.clip(x + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny():
    model, spec = get_model("akutsu2020", **TINY)
    p = dict(_host_init(model, jnp.zeros((1, 64, 64, 3)))["params"])
    p["g_a_4"] = {**p["g_a_4"], "kernel": p["g_a_4"]["kernel"] * 100.0}
    mb = dict(p["mixing_body"])
    b = np.asarray(mb["Conv_1"]["bias"]).copy()
    b[b.size // 2:] += 6.0  # (μ, σ_raw) = split of the last 1×1 conv: the σ half
    mb["Conv_1"] = {**mb["Conv_1"], "bias": jnp.asarray(b)}
    p["mixing_body"] = mb
    v = {"params": p}
    return model, spec, v, Codec(model, spec, v)


@pytest.fixture(scope="module")
def coded(tiny):
    """A 70×45 image (odd sides: padded to 128×64, y 4×8×4) with the fused decoder in the header."""
    model, spec, v, codec = tiny
    img = _image(45, 70)
    return img, codec.encode(img, decoder="synthesis_fused")


def test_incremental_step_matches_parallel(tiny):
    """gaussian_params_step, position by position with the key/value caches (ŷ at positions ≥ i
    zeroed in the window), against the parallel gaussian_params over the whole latent. Measured
    max |Δσ|, |Δμ| = 4.77e-7 (σ ≈ 6 here: a few float32 ulps, summation order; 1.19e-7 before the
    σ bias); tolerance 1.5e-6."""
    model, _, v, _ = tiny
    H, W, M = 4, 8, 4
    rng = np.random.default_rng(0)
    y_hat = np.round(rng.normal(0, 3, (1, H, W, M))).astype(np.float32)
    hyper = rng.normal(0, 1, (1, H, W, 8)).astype(np.float32)
    sig, mu = jax.jit(lambda v, h, y: model.apply(v, h, y, method="gaussian_params"))(v, hyper, y_hat)
    step = jax.jit(lambda v, h, w, c, i: model.apply(v, h, w, c, i, method="gaussian_params_step"))
    caches = model.attention_cache(H * W)
    padded = np.pad(y_hat[0], ((2, 2), (2, 2), (0, 0)))
    diffs = []
    for t in range(H * W):
        h, w = divmod(t, W)
        known = np.zeros((H + 4, W + 4, 1), np.float32)
        known[2:H + 2, 2:W + 2] = (np.arange(H * W) < t).reshape(H, W, 1)
        window = (padded * known)[h:h + 5, w:w + 5][None]
        s, m, caches = step(v, hyper[:, h:h + 1, w:w + 1], window, caches, t)
        diffs += [np.abs(s[0, 0, 0] - sig[0, h, w]), np.abs(m[0, 0, 0] - mu[0, h, w])]
    diff = float(np.max(diffs))  # (NaN propagates and fails)
    assert diff <= 1.5e-6, diff


def test_round_trip_exact(tiny, coded):
    """Encode → decode: the decoder's symbols, ŷ and ẑ equal the encoder's bit for bit; the header
    names akutsu2020 and the fused decoder; the default output is the image's size."""
    model, spec, v, codec = tiny
    img, enc = coded
    header, _ = container.unpack(enc.data)
    assert header.model_name == "akutsu2020" and codec.decoders[header.decoder] == "synthesis_fused"
    out, lat, _ = codec.decode(enc.data)
    assert lat.y_symbols.shape == (4, 8, 4) and np.abs(lat.y_symbols).max() >= 5
    np.testing.assert_array_equal(lat.z_symbols, enc.latents.z_symbols)
    np.testing.assert_array_equal(lat.y_symbols, enc.latents.y_symbols)
    assert lat.y_hat.dtype == np.float32 and lat.y_hat.tobytes() == enc.latents.y_hat.tobytes()
    assert out.shape == img.shape and out.dtype == np.uint8


def test_bytes_match_model_estimate(tiny):
    """Real payload bytes vs the model's own estimate of the coded latents: Σ −log2 of the Gaussian
    likelihood of the coded ŷ under σ, μ = gaussian_params(H_d(ẑ), ŷ) (the parallel form) plus the
    entropy bottleneck's −log2 p(ẑ). Measured on this 256×256 image (y 16×16×4, 1024 symbols):
    payload 592 bytes, estimate 582.96 → ratio 1.0155 (the range coder's termination and the 64
    quantised scale tables); at 70×45 (128 symbols) the fixed overhead dominates: 72 vs 67.35
    bytes, 1.069. Bounds: 1.0 ≤ ratio ≤ 1.03."""
    model, spec, v, codec = tiny
    enc = codec.encode(_image(256, 256, seed=1))
    lat = enc.latents

    def estimate(v, y_hat, z_hat):
        def f(m, y_hat, z_hat):
            sigma, mu = m.gaussian_params(m.hyper_synthesis(z_hat), y_hat)
            y_lik = m.gaussian_conditional.likelihood(y_hat, sigma, mu)
            z_lik = m.entropy_bottleneck(z_hat, "round")[1]
            return -jnp.sum(jnp.log2(y_lik)) - jnp.sum(jnp.log2(z_lik))
        return model.apply(v, y_hat, z_hat, method=f)

    bits = float(jax.jit(estimate)(v, lat.y_hat[None], lat.z_hat[None]))
    payload = sum(enc.header.stream_lengths)
    ratio = 8 * payload / bits
    assert 1.0 <= ratio <= 1.03, (payload, bits / 8, ratio)


def test_detail_decoder_matches_hand_fusion(tiny, coded):
    """``decoder='synthesis_fused'`` (``--detail``) against G_m and G_s run separately on the decoded
    ŷ and fused by hand in numpy (m = 1 / (1 + e^−logit), x̂ = x̂_s·m + x̂_m·(1 − m), centred crop,
    clip). Measured max |Δ| 1.07e-7 (float 'output'); tolerance 4e-7. The main-only decode differs."""
    model, spec, v, codec = tiny
    img, enc = coded
    fused, lat, _ = codec.decode(enc.data, output="float")  # the header asks for synthesis_fused
    y = jnp.asarray(lat.y_hat[None])
    x_m = np.asarray(jax.jit(lambda v, y: model.apply(v, y, method="synthesis_main"))(v, y), np.float64)
    x_s, logit = (np.asarray(a, np.float64) for a in
                  jax.jit(lambda v, y: model.apply(v, y, method="synthesis_detail"))(v, y))
    m = 1.0 / (1.0 + np.exp(-logit))
    ref = (x_s * m + x_m * (1.0 - m))[0]
    (t, _), (l, _) = pad_amounts(45, 70, 64)
    ref = np.clip(ref[t:t + 45, l:l + 70], 0.0, 1.0)
    assert float(np.abs(fused - ref).max()) <= 4e-7, float(np.abs(fused - ref).max())
    main_only = codec.decompress(enc.data, output="float", decoder="synthesis_main")
    assert float(np.abs(main_only - fused).max()) > 1e-3


def test_eval_decoder_option(tiny, coded):
    """``eval.py run --decoder synthesis_fused`` (``LearnedCodec(decoder=…)``): the evaluated
    reconstruction of the file it writes is G_m and G_s fused by hand in numpy (as in
    test_detail_decoder_matches_hand_fusion; measured max |Δ| 3.1e-5 (fused) and 7.6e-6 (main) of 255 with float_recon,
    tolerance 1e-4); without it, G_m alone (the file's default decoder). An unknown decoder, and a
    decoder with entropy estimation, are refused."""
    from lic_jax.evaluation.codecs import LearnedCodec

    model, spec, v, codec = tiny
    img, _ = coded
    outs = {d: LearnedCodec(model, spec, v, codec=codec, warmup=False, float_recon=True, decoder=d).run(img)
            for d in (None, "synthesis_fused")}
    assert outs[None].nbytes == outs["synthesis_fused"].nbytes  # the same file
    lat = codec.decode(codec.compress(img), output="latents")[0]
    y = jnp.asarray(lat.y_hat[None])
    x_m = np.asarray(jax.jit(lambda v, y: model.apply(v, y, method="synthesis_main"))(v, y), np.float64)
    x_s, logit = (np.asarray(a, np.float64) for a in
                  jax.jit(lambda v, y: model.apply(v, y, method="synthesis_detail"))(v, y))
    m = 1.0 / (1.0 + np.exp(-logit))
    (t, _), (l, _) = pad_amounts(45, 70, 64)
    for d, ref in ((None, x_m), ("synthesis_fused", x_s * m + x_m * (1.0 - m))):
        ref = np.clip(ref[0, t:t + 45, l:l + 70], 0.0, 1.0) * 255.0
        err = float(np.abs(np.asarray(outs[d].rec, np.float64) - ref).max())
        assert err <= 1e-4, (d, err)
    with pytest.raises(ValueError, match="no decoder 'synthesis_detail'"):
        LearnedCodec(model, spec, v, codec=codec, decoder="synthesis_detail")
    with pytest.raises(ValueError, match="entropy estimation"):
        LearnedCodec(model, spec, v, entropy_estimation=True, decoder="synthesis_fused")


def test_cli_detail_and_errors(tiny, coded, tmp_path, capsys):
    """``lic decompress --detail`` writes the fused decode (= ``decoder='synthesis_fused'``), without
    it the file's decoder; ``--decoder synthesis_detail`` (G_s returns a pair: not a decoder) and a
    truncated file are one-line errors (exit 1, no output file)."""
    from PIL import Image

    from lic_jax.artifact import save_artifact
    from lic_jax.cli import main

    model, spec, v, codec = tiny
    img, _ = coded
    art = tmp_path / "art"
    save_artifact(str(art), spec, v)
    Image.fromarray(img).save(tmp_path / "x.png")
    lic = tmp_path / "x.lic"
    assert main(["compress", str(tmp_path / "x.png"), str(lic), "--checkpoint", str(art), "--no-psnr", "-q"]) == 0
    data = lic.read_bytes()
    assert container.unpack(data)[0].decoder == 0  # the CLI writes the default decoder (G_m)
    for opt, decoder in (([], "synthesis_main"), (["--detail"], "synthesis_fused")):
        out = tmp_path / f"{decoder}.png"
        assert main(["decompress", str(lic), str(out), "--checkpoint", str(art), "-q", *opt]) == 0
        np.testing.assert_array_equal(np.asarray(Image.open(out)), codec.decompress(data, decoder=decoder))
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "synthesis_main.png")),
                              np.asarray(Image.open(tmp_path / "synthesis_fused.png")))
    capsys.readouterr()
    (tmp_path / "t.lic").write_bytes(data[:-3])
    for args, pattern in ((["--decoder", "synthesis_detail"], "synthesis_main, synthesis_fused"),
                          (["--detail", "--decoder", "synthesis_main"], "cannot go with"),
                          ([], "truncated")):
        src = tmp_path / ("t.lic" if pattern == "truncated" else "x.lic")
        bad = tmp_path / "bad.png"
        assert main(["decompress", str(src), str(bad), "--checkpoint", str(art), *args]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lic: error:") and pattern in err, err
        assert not bad.exists()


# -- --detail-roi: G_s on a region (detail_ca='local'; lic_jax/coding/detail_roi.py) ---------------
#
# Broken on purpose once each (the source edited, the named test run, the edit undone; all failed):
#
# * local_variance dividing by window² (average pooling *including* the zero padding) instead of
#   the count of valid pixels: test_local_variance_reference_and_crop failed (max |Δ| 1.36 against
#   the brute-force reference, tolerance 2e-6; its crop part alone would not see it: both forms
#   read the same k×k neighbourhood).
# * detail_body_radius with window // 2 − 1 (a margin for a 7×7 CA while G_s reads 9×9):
#   test_margin_is_exact failed (the NaN row r0 − 1 reached the ROI) and test_roi_equals_full_detail
#   failed on its window assertion. With that assertion removed, its values still matched bit for
#   bit: the missing latent's effect underflows float32, so the NaN test is what guards the margin.
# * detail_latent_interval's head conv ±1 dropped: test_margin_is_exact failed.

BIG = 768  # 48×48 latents: the ROI's window (36 latents wide for the tiny model) fits inside


@pytest.fixture(scope="module")
def big_y():
    return np.round(np.random.default_rng(3).normal(0, 3, (BIG // 16, BIG // 16, 4))).astype(np.float32)


def test_local_variance_reference_and_crop():
    """local_variance (9×9, padding excluded) against a brute-force numpy definition (mean of x² −
    mean² over the neighbours inside the map; max |Δ| measured 4.8e-7 on values ~1, tolerance 2e-6),
    and commuting with cropping: the crop's variance equals the full map's at every pixel ≥ 4 away
    from a crop edge that is not a map edge (bit for bit, measured)."""
    from lic_jax.models.akutsu2020 import local_variance

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (1, 23, 19, 3)).astype(np.float32)
    got = np.asarray(local_variance(jnp.asarray(x), 9))
    xd = x.astype(np.float64)[0]
    ref = np.zeros_like(xd)
    for i in range(23):
        for j in range(19):
            nb = xd[max(0, i - 4):i + 5, max(0, j - 4):j + 5].reshape(-1, 3)
            ref[i, j] = nb.var(axis=0)
    assert float(np.abs(got[0] - ref).max()) <= 2e-6, float(np.abs(got[0] - ref).max())
    for (r0, r1), (c0, c1) in (((5, 18), (6, 15)), ((0, 12), (0, 19)), ((9, 23), (3, 19))):
        crop = np.asarray(local_variance(jnp.asarray(x[:, r0:r1, c0:c1]), 9))
        i0, i1 = (r0 + 4 if r0 else 0), (r1 - 4 if r1 < 23 else 23)
        j0, j1 = (c0 + 4 if c0 else 0), (c1 - 4 if c1 < 19 else 19)
        np.testing.assert_array_equal(crop[:, i0 - r0:i1 - r0, j0 - c0:j1 - c0], got[:, i0:i1, j0:j1])


def test_roi_equals_full_detail(tiny, big_y):
    """detail_roi_synthesis on a 768×768 decode (ŷ 48×48 random symbols, no bitstream): inside the
    ROI it equals the full --detail decode (synthesis_fused on the whole ŷ), outside it equals G_m's
    decode bit for bit. ROIs: 64×48 in the middle (latent window 36×36 of 48×48: the margin, 16
    latents, is cut on all four sides), one at the top-left corner and one touching the top and
    right borders. Measured max |Δ| inside: 0.0 (bit for bit, CPU) for all three; tolerance 1e-6
    (other devices may round a different-sized convolution differently)."""
    from lic_jax.coding.detail_roi import detail_roi_synthesis
    from lic_jax.models.akutsu2020 import detail_margin

    model, spec, v, codec = tiny
    assert detail_margin(model.blocks) == 16 and detail_margin(6) == 73
    full = np.asarray(codec._fns.synthesis("synthesis_fused")(codec._dev_vars, big_y[None]))
    main = np.asarray(codec._fns.synthesis("synthesis_main")(codec._dev_vars, big_y[None]))
    for roi, window in (((352, 360, 64, 48), ((6, 42), (6, 42))), ((0, 0, 64, 48), ((0, 19), (0, 20))),
                        ((700, 0, 68, 30), ((0, 18), (27, 48)))):
        st = {}
        x = detail_roi_synthesis(codec, big_y, roi, BIG, BIG, stats=st)
        assert st["window"] == window, (roi, st)
        X, Y, w, h = roi
        inside = float(np.abs(x - full)[:, Y:Y + h, X:X + w].max())
        assert inside <= 1e-6, (roi, inside)
        out = np.ones((BIG, BIG), bool)
        out[Y:Y + h, X:X + w] = False
        np.testing.assert_array_equal(x[0][out], main[0][out])
        assert float(np.abs(full - main)[:, Y:Y + h, X:X + w].max()) > 1e-3  # the detail does change the ROI


def test_margin_is_exact(tiny, big_y):
    """The margin is exactly G_s's receptive field: a NaN row / column of ŷ just outside the ROI's
    latent window (r0 − 1, r1, c0 − 1, c1) leaves G_s's output in the ROI finite, one just inside
    (r0, r1 − 1, c0, c1 − 1) reaches it (NaN propagates through every tap, so this is structural,
    not a size of effect). Hence a window 1 latent smaller on any side is not exact (a finite
    perturbation there is too weak to see: its effect through ~20 edge taps underflows float32 —
    measured: ``shrink=1`` still gave max |Δ| 0.0 with random symbols)."""
    from lic_jax.coding.detail_roi import roi_latent_window

    model, spec, v, codec = tiny
    roi = (352, 360, 64, 48)
    ((r0, r1), (c0, c1)), _ = roi_latent_window(model, roi, BIG, BIG)
    detail = codec._fns.synthesis("synthesis_detail")
    X, Y, w, h = roi
    for axis, idx, reaches in ((0, r0 - 1, False), (0, r0, True), (0, r1, False), (0, r1 - 1, True),
                               (1, c0 - 1, False), (1, c0, True), (1, c1, False), (1, c1 - 1, True)):
        y = big_y.copy()
        if axis == 0:
            y[idx] = np.nan
        else:
            y[:, idx] = np.nan
        x_s, logit = detail(codec._dev_vars, y[None])
        region = np.concatenate([np.asarray(x_s), np.asarray(logit)], -1)[0, Y:Y + h, X:X + w]
        assert bool(np.isnan(region).any()) == reaches, (axis, idx, reaches)


def test_cli_detail_roi_and_errors(tiny, coded, tmp_path, capsys):
    """``lic decompress --detail-roi`` on the 70×45 file (the margin covers the whole latent here):
    the PNG equals decode_detail_roi, which equals the --detail decode inside the ROI (float output,
    measured max |Δ| 0.0; tolerance 1e-6) and G_m's outside (bit for bit). One-line errors (exit 1,
    no file): malformed, empty and out-of-image ROIs, and a detail_ca='global' artifact of the same
    weights (its spec records 'global'; a stored spec without the field reads as 'global'); an unknown
    detail_ca is a clear error from get_model."""
    from PIL import Image

    from lic_jax.artifact import load_artifact, save_artifact
    from lic_jax.cli import main
    from lic_jax.coding.detail_roi import decode_detail_roi
    from lic_jax.models.registry import ModelSpec

    model, spec, v, codec = tiny
    img, enc = coded
    roi = (20, 10, 30, 25)
    x = decode_detail_roi(codec, enc.data, roi, output="float")
    full = codec.decompress(enc.data, output="float", decoder="synthesis_fused")
    main_only = codec.decompress(enc.data, output="float", decoder="synthesis_main")
    assert float(np.abs(x - full)[10:35, 20:50].max()) <= 1e-6
    out = np.ones(x.shape[:2], bool)
    out[10:35, 20:50] = False
    np.testing.assert_array_equal(x[out], main_only[out])
    art, glob = tmp_path / "art", tmp_path / "glob"
    save_artifact(str(art), spec, v)
    gmodel, gspec = get_model("akutsu2020", **TINY, detail_ca="global")
    save_artifact(str(glob), gspec, v)
    assert load_artifact(str(glob)).spec.build().detail_ca == "global"
    legacy = {"name": "akutsu2020", "quality": None, "hparams": {"width": 0.0625, "blocks": 1}}
    assert ModelSpec.from_dict(legacy).build().detail_ca == "global"
    with pytest.raises(ValueError, match="detail_ca"):
        get_model("akutsu2020", **TINY, detail_ca="Local")
    lic = tmp_path / "x.lic"
    lic.write_bytes(enc.data)
    dst = tmp_path / "roi.png"
    assert main(["decompress", str(lic), str(dst), "--checkpoint", str(art), "-q", "--detail-roi", "20,10,30,25"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(dst)), decode_detail_roi(codec, enc.data, roi))
    capsys.readouterr()
    for ckpt, text, pattern in ((art, "1,2,3", "four integers"), (art, "a,b,c,d", "four integers"),
                                (art, "0,0,0,5", "empty"), (art, "60,40,20,10", "not inside"),
                                (art, "-1,0,5,5", "not inside"), (glob, "20,10,30,25", "detail_ca='global'")):
        bad = tmp_path / "bad.png"
        assert main(["decompress", str(lic), str(bad), "--checkpoint", str(ckpt), f"--detail-roi={text}"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lic: error:") and pattern in err, (text, err)
        assert not bad.exists()


@pytest.mark.extended  # ~3 CPU-minutes: outside the 90-minute CI, scripts/test.sh --extended
def test_kodak_round_trips_in_separate_processes(tiny, kodak_dir, tmp_path):
    """All 24 Kodak images (768×512, ŷ 32×48×4: 1536 sequential context steps each) encoded in one
    fresh process, decoded in two others, with the main decoder and with ``--detail`` (the fused
    decoder): every decode's symbols, ẑ symbols and ŷ equal the encoder's bit for bit, and the
    detail decode differs from the main one. The energised tiny model of this module, saved as an
    artifact (nothing shared between the processes but the model directory and the files), through
    experiments/akutsu_roundtrips.py, the script that checks a trained model the same way."""
    import json
    import os
    import subprocess
    import sys

    from lic_jax.artifact import save_artifact

    model, spec, v, _ = tiny
    art = tmp_path / "model"
    save_artifact(art, spec, v)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                          "akutsu_roundtrips.py")
    out = tmp_path / "roundtrips.json"
    r = subprocess.run([sys.executable, script, "--model", str(art), "--dataset", str(kodak_dir), "--out", str(out),
                        "--workdir", str(tmp_path / "files")], capture_output=True, text=True, env=env, timeout=3600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 24, [x["image"] for x in rows]
    bad = [x for x in rows if not (x["main_exact"] and x["fused_exact"] and x["detail_differs"])]
    assert not bad, bad
