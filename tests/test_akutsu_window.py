"""akutsu2020 with a local causal-attention window (``attention_window`` = r > 0; issue 20, item 4):
the context reads only nearby earlier latents, so the coder decodes by wavefronts s·h + w = t
(s = max(3, r + 1)) instead of position by position (``lic_jax.coding.latent_coders.attention``,
docs/AKUTSU.md "A local attention window").

Broken on purpose once each (the source edited, the named test run, the edit undone; all failed):

* the local mask's column bound ``<= window`` → ``<= window + 1``: test_local_attention_reads_exactly_its_window
  failed (test_local_context_reads_only_earlier_wavefronts did not: a key at (h − 1, w + r + 1) depends
  on ŷ before it only, which with s = 3 still lies on earlier wavefronts).
* the wavefront mask's raster condition ``dw <= 0`` → ``dw <= 1`` (a query reads the not yet written
  slot to its right): test_wavefront_coder_matches_the_parallel_model failed.
* μ perturbed by 1e-3 in the decoder only (``_wavefronts``, ``mu_h + 1e-3`` when not encoding):
  test_round_trip_exact_by_wavefronts failed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lic_jax.coding import Codec
from lic_jax.coding.wavefront import num_wavefronts
from lic_jax.models import akutsu2020 as A
from lic_jax.models import get_model
from test_akutsu2020 import TINY, _host_init, _position_jacobian
from test_akutsu_coding import _image

R = 1  # window radius of the tiny model: slope max(3, r + 1) = 3, as mbt2018


def test_local_context_reads_only_earlier_wavefronts():
    """Every latent that σ, μ at position i depend on (Jacobian ≠ 0) lies on an earlier wavefront
    s·h + w < t(i), which is what decoding by wavefronts needs; the local model still reads beyond
    the 5×5 masked convolution (through both attention layers), and the global model of the same
    weights reads latents of later wavefronts (so the check can fail)."""
    H, W = 6, 11
    rng = np.random.default_rng(0)
    y = jnp.asarray(np.round(3 * rng.standard_normal((1, H, W, 3))), jnp.float32)
    hyper = jnp.asarray(rng.standard_normal((1, H, W, 8)), jnp.float32)
    jacs = {}
    for r in (0, R, 2):
        ctx = A.ContextEstimator(features=8, key_dim=4, window=r)
        cv = _host_init(ctx, y)
        mix = A.MixingBody(latent=3, features=8, key_dim=4, window=r)
        mv = _host_init(mix, jax.ShapeDtypeStruct((1, H, W, 8), jnp.float32), hyper, seed=1)
        jacs[r] = _position_jacobian(lambda t: jnp.concatenate(mix.apply(mv, ctx.apply(cv, t), hyper), -1), y)
    hh, ww = np.divmod(np.arange(H * W), W)
    for r in (R, 2):
        s = max(3, r + 1)
        t = s * hh + ww
        dep = jacs[r] > 0  # [i, j]: output at i depends on ŷ at j
        assert not np.any(dep & (t[None, :] >= t[:, None])), f"r={r}: reads its own or a later wavefront"
        # it reads beyond the masked convolution's reach (2 rows up, 2 columns either side)
        far = (hh[:, None] - hh[None, :] > 2) | (np.abs(ww[:, None] - ww[None, :]) > 2)
        assert np.any(dep & far), r
    assert np.any((jacs[0] > 0) & (3 * hh + ww)[None, :] >= (3 * hh + ww)[:, None])


@pytest.mark.parametrize("r", [1, 2])
def test_local_attention_reads_exactly_its_window(r):
    """The attention layer alone: output i depends on the features at j exactly when j is at most r
    rows above and r columns either side of i and not after it in raster order (the Jacobian's
    non-zero pattern equals that set, position by position)."""
    H, W = 5, 9
    rng = np.random.default_rng(1)
    h = jnp.asarray(rng.standard_normal((1, H, W, 6)), jnp.float32)
    att = A.CausalSelfAttention(key_dim=4, window=r)
    av = _host_init(att, h)
    dep = _position_jacobian(lambda t: att.apply(av, t), h) > 0
    hh, ww = np.divmod(np.arange(H * W), W)
    di, dj = hh[:, None] - hh[None, :], ww[None, :] - ww[:, None]  # rows above i, columns right of i
    expected = (np.arange(H * W)[None, :] <= np.arange(H * W)[:, None]) & (di <= r) & (np.abs(dj) <= r)
    np.testing.assert_array_equal(dep, expected)


@pytest.fixture(scope="module")
def windowed():
    """The tiny model of test_akutsu_coding with attention_window = R, energised the same way."""
    model, spec = get_model("akutsu2020", **TINY, attention_window=R)
    p = dict(_host_init(model, jnp.zeros((1, 64, 64, 3)))["params"])
    p["g_a_4"] = {**p["g_a_4"], "kernel": p["g_a_4"]["kernel"] * 100.0}
    mb = dict(p["mixing_body"])
    b = np.asarray(mb["Conv_1"]["bias"]).copy()
    b[b.size // 2:] += 6.0
    mb["Conv_1"] = {**mb["Conv_1"], "bias": jnp.asarray(b)}
    p["mixing_body"] = mb
    v = {"params": p}
    return model, spec, v, Codec(model, spec, v)


def test_wavefront_coder_matches_the_parallel_model(windowed):
    """The coder's μ (ŷ − symbol) and scale-table indexes at every position, computed by wavefronts,
    against the parallel ``gaussian_params`` on the same ŷ: μ equal to float rounding (measured
    max |Δμ| 4.17e-7; tolerance 1.5e-6) and the indexes of σ equal except where σ sits on a table
    boundary (none here)."""
    model, spec, v, codec = windowed
    img = _image(100, 150, seed=3)
    enc = codec.encode(img)
    lat = enc.latents
    H, W, M = lat.y_symbols.shape
    assert (H, W) == (8, 12) and spec.hparams["attention_window"] == R
    y_hat = jnp.asarray(lat.y_hat[None])
    hyper = model.apply(v, jnp.asarray(lat.z_hat[None]), method="hyper_synthesis")
    sig, mu = jax.jit(lambda v, h, y: model.apply(v, h, y, method="gaussian_params"))(v, hyper, y_hat)
    mu_coder = lat.y_hat - lat.y_symbols.astype(np.float32)
    diff = float(np.max(np.abs(mu_coder - np.asarray(mu[0]))))
    print(f"max |Δμ| wavefront coder vs parallel: {diff:.3g}")
    assert diff <= 1.5e-6, diff
    from lic_jax.entropy_models.gaussian import scale_indexes

    np.testing.assert_array_equal(lat.y_indexes, np.asarray(scale_indexes(sig[0])))


def test_round_trip_exact_by_wavefronts(windowed):
    """Encode → decode: symbols, ŷ and ẑ equal the encoder's bit for bit, and the decoder ran one
    step per wavefront (3·(H − 1) + W = 33 for the 8 × 12 latent), not one per position (96)."""
    model, spec, v, codec = windowed
    img = _image(100, 150, seed=3)
    enc = codec.encode(img)
    programs = codec.latent_coder.programs
    calls = []
    inner = programs.wave_step
    programs.wave_step = lambda *a: calls.append(1) or inner(*a)
    try:
        out, lat, _ = codec.decode(enc.data)
    finally:
        programs.wave_step = inner
    H, W, _ = lat.y_symbols.shape
    assert len(calls) == num_wavefronts(H, W, 3) == 33 < H * W
    np.testing.assert_array_equal(lat.z_symbols, enc.latents.z_symbols)
    np.testing.assert_array_equal(lat.y_symbols, enc.latents.y_symbols)
    assert np.abs(lat.y_symbols).max() >= 5
    assert lat.y_hat.tobytes() == enc.latents.y_hat.tobytes()
    assert out.shape == img.shape


def test_attention_window_errors(windowed):
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="attention_window"):
            get_model("akutsu2020", **TINY, attention_window=bad)
    model, _, v, _ = windowed
    with pytest.raises(ValueError, match="wavefronts"):
        model.apply(v, jnp.zeros((1, 1, 1, 8)), jnp.zeros((1, 5, 5, 4)), model.attention_cache(4), 0,
                    method="gaussian_params_step")
