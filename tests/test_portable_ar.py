"""mbt2018-int (issue 13): the integer context model and entropy-parameter network.

* ``test_decode_matches_int64_reference``: a file's decoded table indexes and ŷ equal a numpy int64
  reimplementation of the whole integer path (h_s, masked context, g_ep) evaluated position by
  position in raster order — independent of the coder's wavefront schedule, its int32 state and
  jax — and the decoder returns exactly the encoder's symbols.
* ``test_fake_quant_twin_tracks_the_integer_path``: the float twin that training and rate estimates
  use gives the integer path's indexes on (almost) every position.
* ``test_bounds_hold_for_worst_case_weights``: at mbt2018's widest configuration (N=192, M=320) with
  every weight at full 8-bit magnitude, the exactness proof (check_bounds) accepts the bit widths,
  and rejects wider activations.
The cross-environment round trips (24 Kodak images, jax 0.10 ↔ 0.4.30) are in tests/test_portable.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import DATA, load_rgb, require_data
from test_integer_layers import ref_layer, ref_post, ref_round_shift


@pytest.fixture(scope="module")
def small():
    """mbt2018-int at N=64, M=96, random weights made non-trivial, calibrated on 4 training crops."""
    from lic_jax.coding import Codec
    from lic_jax.models import get_model
    from lic_jax.models.portable import portable_spec
    from test_determinism import nontrivial_params

    kodak = require_data(DATA / "kodak")
    model, spec = get_model("mbt2018", 3, N=64, M=96)
    v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3), jnp.float32))
    params = jax.tree_util.tree_map(np.asarray, dict(v["params"]))
    x = load_rgb(kodak / "kodim23.png")[128:256, 256:384][None].astype(np.float32) / 255.0
    variables = {"params": nontrivial_params(model, params, x)}
    crops = [load_rgb(p).astype(np.float32) / 255.0 for p in sorted((DATA / "train").glob("*.png"))[:4]]
    pspec = portable_spec(spec, variables, crops)
    assert pspec.name == "mbt2018-int" and len(pspec.hparams["int_shifts"]) == 7
    codec = Codec(pspec.build(), pspec, variables)
    img = load_rgb(kodak / "kodim05.png")[:128, :192]
    enc = codec.encode(img)
    dec = codec.decode(enc.data, output="latents")
    return codec, variables, enc, dec


def _reference(im, qz, sym):
    """(indexes, μ_int) of every y position, numpy int64, raster order (module docstring)."""
    a = np.clip(np.asarray(qz, np.int64)[None] * 2**im.z_shift + np.asarray(im.centres, np.int64), -im.z_max, im.z_max)
    for layer in im.hyper:
        a = ref_layer(layer, a)
    H, W, M = sym.shape
    feats = a[0, :H, :W]
    k, (ah, aw) = im.kernel, im.anchor
    grid = np.zeros((H + k - 1, W + k - 1, M), np.int64)  # integer ŷ, filled as decoding proceeds
    ctx_w = np.asarray(im.ctx.kernel, np.int64)
    idx = np.zeros((H, W, M), np.int64)
    mu = np.zeros((H, W, M), np.int64)
    T = np.asarray(im.thresholds, np.int64)

    for h in range(H):
        for w in range(W):
            win = grid[h:h + k, w:w + k]  # rows h − a_h …, columns w − a_w …
            acc = np.einsum("hwi,hwio->o", win, ctx_w) + np.asarray(im.ctx.bias, np.int64)
            v = np.concatenate([feats[h, w], ref_post(im.ctx, acc)])
            for layer in im.ep:
                v = ref_post(layer, v @ np.asarray(layer.kernel, np.int64)[0, 0] + np.asarray(layer.bias, np.int64))
            s, m = v[:M], np.clip(v[M:], -(2**24 - 1), 2**24 - 1)
            idx[h, w] = (s[:, None] >= T).sum(axis=1)
            mu[h, w] = m
            yq = np.clip(sym[h, w].astype(np.int64), -(2**12), 2**12) * 2**im.y_shift + np.array(
                [ref_round_shift(int(x), 16 - im.y_shift) for x in m])
            grid[h + ah, w + aw] = np.clip(yq, -im.y_max, im.y_max)
    return idx, mu


def test_decode_matches_int64_reference(small):
    codec, _, enc, dec = small
    np.testing.assert_array_equal(dec.latents.y_symbols, enc.latents.y_symbols)
    np.testing.assert_array_equal(dec.latents.z_symbols, enc.latents.z_symbols)
    im = codec.latent_coder.integer
    idx, mu = _reference(im, dec.latents.z_symbols, dec.latents.y_symbols)
    np.testing.assert_array_equal(dec.latents.y_indexes, idx)
    y_hat = (dec.latents.y_symbols.astype(np.float64) + np.ldexp(mu.astype(np.float64), -16)).astype(np.float32)
    np.testing.assert_array_equal(dec.latents.y_hat, y_hat)
    # not degenerate (measured: 15 tables used, |μ| up to 0.71, thousands of distinct μ)
    assert len(np.unique(idx)) > 8 and np.abs(mu).max() > 2**14 and len(np.unique(mu)) > 1000


def test_fake_quant_twin_tracks_the_integer_path(small):
    from lic_jax.entropy_models.gaussian import scale_indexes

    codec, variables, _, dec = small
    m = codec.model
    lat = dec.latents
    hyper = m.apply(variables, jnp.asarray(lat.z_hat[None]), method="hyper_synthesis")["hyper"]
    H, W = lat.y_hat.shape[:2]
    scales, means = m.apply(variables, hyper[:, :H, :W], jnp.asarray(lat.y_hat[None]), method="gaussian_params")
    idx_f = np.asarray(scale_indexes(scales))[0]
    mism = float(np.mean(idx_f != lat.y_indexes))
    # measured: 0.0 % of positions differ (float32 sums of these sizes stay exact); allow 1 %
    assert mism < 0.01, mism
    mu = lat.y_hat - lat.y_symbols
    assert float(np.mean(np.asarray(means)[0] != mu)) < 0.01


def test_bounds_hold_for_worst_case_weights():
    from lic_jax.models import get_model
    from lic_jax.models.portable_ar import integer_context_model

    model, spec = get_model("mbt2018", 8)  # N=192, M=320
    assert (model.N, model.M) == (192, 320)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3), jnp.float32)))
    # every weight 127/128: quantised to 127 (the largest 8-bit magnitude) in every layer
    params = jax.tree_util.tree_map(lambda s: np.full(s.shape, 127 / 128, np.float32), shapes["params"])
    pm = get_model("mbt2018-int", 8, int_shifts=(7, 7, 9, 6, 6, 5, 7))[0]
    im = integer_context_model(pm, params)  # check_bounds runs in the constructor
    assert (np.abs(im.ctx.kernel).max(), np.abs(im.ep[0].kernel).max()) == (127, 127)
    assert (np.asarray(im.ctx.kernel)[2, 2:] == 0).all() and (np.asarray(im.ctx.kernel)[3:] == 0).all()  # mask A
    with pytest.raises(ValueError, match="int32"):
        integer_context_model(pm.clone(act_bits=16, feature_bits=16), params)
    # 16-bit features overflow only the entropy-parameter chain (1280 inputs × 127 × 2**15 > 2**31)
    with pytest.raises(ValueError, match="int32"):
        integer_context_model(pm.clone(feature_bits=16), params)
