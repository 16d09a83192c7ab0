"""Tiled transforms (lic_jax/coding/tiling.py, docs/LARGE_IMAGES.md): the receptive field derived
from the layer stack against the transforms' measured impulse responses, tiled against untiled
(latents, symbols, file bytes, reconstructions), a halo one latent too small, and the ``lic``
command with small tiles."""

from __future__ import annotations

import numpy as np
import pytest

import test_coding_support as S

from lic_jax.coding import Codec, to_uint8
from lic_jax.coding.tiling import (
    Tiling,
    TiledTransforms,
    as_tiling,
    axis_plan,
    needed_intervals,
    required_halo,
    tiled_apply,
    transform_geometry,
)

# one architecture per distinct g_a / g_s stack (4 × 5×5/2; 9×9/4 + 2 × 5×5/2 with GDN at the
# ends; the modulated stacks keep their modulations outside the layer lists)
STACKS = ("bmshj2018-hyperprior", "bls2017", "mae-bls2017", "mae-hyperprior")


WINOGRAD = "bmshj2018-hyperprior+winograd"  # opted in to Winograd transposed convolutions (not the default)
PHASES = "bmshj2018-hyperprior+winograd-phases"  # opted in to the phase form (exact taps: halo (1, 2))


def _small(name, width=8):
    import jax

    from lic_jax.coding.programs import inference_model
    from lic_jax.models import get_model

    name, _, wino = name.partition("+")
    model, spec = get_model(name, N=width) if name in ("bls2017", "mae-bls2017") else get_model(name, N=width, M=width)
    # the decoder's transposed-convolution forms (what the tiler runs), or Winograd everywhere
    model = model.clone(conv_transpose_impl=wino) if wino else inference_model(model)
    lam = (np.float32(0.01),) if name.startswith("mae-") else ()
    v = model.init(jax.random.PRNGKey(0), np.zeros((1, 64, 64, 3), np.float32), *lam)
    return model, spec, {"params": jax.tree_util.tree_map(np.asarray, dict(v["params"]))}, lam


def _dependency(fn, x, probe):
    """Columns of fn's output that change when column ``probe`` of x changes (batched probes)."""
    base = np.asarray(fn(x))
    xp = x.copy()
    xp[:, :, probe, :] += 5.0
    d = np.asarray(fn(xp)) != base
    cols = np.flatnonzero(d.any(axis=(0, 1, 3)))
    return set(cols.tolist())


@pytest.mark.parametrize("name", STACKS + (WINOGRAD, PHASES))
def test_receptive_field_matches_the_impulse_response(name):
    """needed_intervals (from the layer stack) is exactly the set of input columns each output
    column depends on: perturb every input column of one period and compare."""
    import jax

    model, _, v, lam = _small(name)
    ga, gs = transform_geometry(model, v, "analysis"), transform_geometry(model, v, "synthesis")
    ana = jax.jit(lambda x: model.apply(v, x, *lam, method="analysis"))
    syn = jax.jit(lambda y: model.apply(v, y, *lam, method="synthesis"))
    rng = np.random.default_rng(0)
    W = 256  # 16 latents
    x = rng.random((1, 32, W, 3)).astype(np.float32)
    for c in range(96, 112):  # one period of the stride-16 grid
        predicted = {j for j in range(W // 16) 
                     if needed_intervals(ga, j, j)[0][0] <= c <= needed_intervals(ga, j, j)[0][1]}
        assert _dependency(ana, x, c) == predicted, (name, c)
    y = rng.normal(size=(1, 2, 16, np.asarray(ana(x)).shape[-1])).astype(np.float32)
    predicted = {o for o in range(256) if needed_intervals(gs, o, o)[0][0] <= 7 <= needed_intervals(gs, o, o)[0][1]}
    assert _dependency(syn, y, 7) == predicted
    # (all four stacks: see tiling.py); the synthesis's (1, 2) becomes (2, 2) with sub-pixel Winograd layers
    # (the opt-in phase form keeps the exact taps)
    sub_wino = any(g.winograd and not g.phases for g in gs)
    assert required_halo(ga) == (2, 1) and required_halo(gs) == ((2, 2) if sub_wino else (1, 2))


def test_axis_plan_covers_each_latent_once_with_the_halo():
    for n in (1, 5, 17, 48, 100):
        for tile in (1, 3, 8, 64):
            for left, right in ((2, 1), (1, 2), (0, 0), (2, 2)):
                for align in (1, 2):
                    plan = axis_plan(n, tile, left, right, align)
                    kept = np.concatenate([np.arange(k0, k1) for _, _, k0, k1 in plan])
                    np.testing.assert_array_equal(kept, np.arange(n))
                    assert len({c1 - c0 for c0, c1, _, _ in plan}) == 1  # one crop shape
                    for c0, c1, k0, k1 in plan:
                        assert 0 <= c0 <= k0 < k1 <= c1 <= n and c0 % align == 0
                        assert c0 == 0 or k0 - c0 >= left
                        assert c1 == n or c1 - k1 >= right


TILED_ATOL = 1e-7  # 3 × the largest tiled-vs-untiled difference measured at width 8 (3.0e-8; LARGE_IMAGES.md)


@pytest.mark.parametrize("name", STACKS + (WINOGRAD,))
def test_tiled_equals_untiled_and_a_smaller_halo_does_not(name):
    """Tiled analysis and synthesis with the derived halo equal the untiled transforms up to float
    summation order (≤ 1e-7; at width 8 XLA:CPU picks other convolution code for some crop
    shapes); one latent less halo on either side changes the result far beyond that — the
    derived halo is the smallest that works."""
    import jax

    model, _, v, lam = _small(name)
    tt = TiledTransforms(model, v)
    ana = jax.jit(lambda x: model.apply(v, x, *lam, method="analysis"))
    syn = jax.jit(lambda y: model.apply(v, y, *lam, method="synthesis"))
    x = S.kodak_image(3)[:192, :320][None].astype(np.float32) / 255.0  # 12 × 20 latents
    y_ref = np.asarray(ana(x))
    yq = np.rint(y_ref * 8)  # non-trivial latents for the synthesis
    x_ref = np.asarray(syn(yq))
    al = tt.synthesis_align  # 2: Winograd layers (crops start on even latents)
    for tile in (3, 5, 8):
        np.testing.assert_allclose(tiled_apply(ana, x, 16, 1, tile, tt.analysis_halo), y_ref, rtol=0, atol=TILED_ATOL)
        np.testing.assert_allclose(tiled_apply(syn, yq, 1, 16, tile, tt.synthesis_halo, align=al), x_ref, rtol=0,
                                   atol=TILED_ATOL)
    # (with align 2 the left halo is rounded up to even, so one step less is 2 latents less, and
    # odd latent counts keep axis_plan from lengthening the crops by one on the right)
    yo = yq[:, :11, :19]
    xo = np.asarray(syn(yo))
    for short in ((-1, 0), (0, -1)):
        h = (tt.analysis_halo[0] + short[0], tt.analysis_halo[1] + short[1])
        assert np.abs(tiled_apply(ana, x, 16, 1, 5, h) - y_ref).max() > 100 * TILED_ATOL, (name, h)
        h = (tt.synthesis_halo[0] + al * short[0], tt.synthesis_halo[1] + short[1])
        assert np.abs(tiled_apply(syn, yo, 1, 16, 4, h, align=al) - xo).max() > 100 * TILED_ATOL, (name, h)


def test_real_width_tiles_are_bit_identical(kodak_dir):
    """The first shipped default model (bmshj2018-hyperprior q4, N = 128, M = 192) on a Kodak image, in
    the decoder's forms (blocked Winograd synthesis on CPU): tiles of 2 … 20 latents give the reconstruction bit for bit, and
    tiles of 5 … 20 latents give y bit for bit. Analysis tiles of ≤ 3 latents (crops ≤ 96 px) do
    not (XLA:CPU switches convolution code: measured with 2-latent tiles 96.5 % of y values differ,
    by ≤ 8.58e-6), bounded here by 3 × that maximum. (The codec never uses such tiles for the
    analysis: ANALYSIS_TILE = 64.) With the unblocked Winograd products the synthesis tiles of
    4 and 8 latents differed on 62 % of the values, by ≤ 5.4e-7."""
    import jax

    from lic_jax.default_model import first_default_model_path

    codec = Codec.from_artifact(first_default_model_path())  # fixed-rate: its transforms take no λ
    from lic_jax.coding.programs import inference_model

    model, v = inference_model(codec.model), codec._cpu_vars  # the decoder's forms, as Codec runs them
    tt = TiledTransforms(model, v)
    ana = jax.jit(lambda x: model.apply(v, x, method="analysis"))
    syn = jax.jit(lambda y: model.apply(v, y, method="synthesis"))
    x = S.kodak_image(3)[None].astype(np.float32) / 255.0
    y_ref = np.asarray(ana(x))
    yq = np.rint(y_ref)
    assert np.mean(yq != 0) > 0.05
    x_ref = np.asarray(syn(yq))
    # the decoder's synthesis runs blocked Winograd on CPU (crops start on even latents); with the opt-in
    # 'winograd-phases' form the halo would be the receptive field's (1, 2): checked once, docs/LARGE_IMAGES.md
    assert tt.synthesis_align == 2 and tt.synthesis_halo == (2, 2)
    for tile in (5, 8, 13, 20):
        np.testing.assert_array_equal(tiled_apply(ana, x, 16, 1, tile, tt.analysis_halo), y_ref)
        np.testing.assert_array_equal(tiled_apply(syn, yq, 1, 16, tile, tt.synthesis_halo, align=tt.synthesis_align), x_ref)
    dy = np.abs(tiled_apply(ana, x, 16, 1, 2, tt.analysis_halo) - y_ref)
    dx = np.abs(tiled_apply(syn, yq, 1, 16, 2, tt.synthesis_halo, align=tt.synthesis_align) - x_ref)
    print(f"tile 2: y {np.mean(dy > 0):.3f} differ, max {dy.max():.2e}; x {np.mean(dx > 0):.3f}, max {dx.max():.2e}")
    assert dy.max() <= 2.6e-5  # 3 × measured (8.58e-6)
    assert dx.max() == 0  # (sub-pixel synthesis: 79.9 % of the values differed, by ≤ 1.07e-6)


def _codec(name, tiling):
    if name == "default":
        from lic_jax.default_model import default_model_path

        codec = Codec.from_artifact(default_model_path())
        codec.tiling = as_tiling(tiling)
        return codec
    return Codec(*S.model_and_spec(name), S.trained_variables(name), tiling=tiling)


@pytest.mark.parametrize("name", ("mbt2018", "bls2017"))  # real width: the two tests below
def test_codec_files_do_not_depend_on_the_tile_size(name, kodak_dir):
    """A Kodak image through Codec with synthesis tiles of 64 and 208 pixels (96 and 12 tiles)
    and tiling forced on: the file bytes and latents of the untiled codec (the analysis uses
    ANALYSIS_TILE whatever the tile size); the decoded image within float rounding."""
    ref = _codec(name, "off")
    tiled = {t: _codec(name, t) for t in (64, 208, "on")}
    for i in (15,):
        img = S.kodak_image(i)
        enc = ref.encode(img)
        x_ref = ref.decompress(enc.data, output="float")
        for t, c in tiled.items():
            e = c.encode(img)
            assert e.data == enc.data, (name, i, t)
            np.testing.assert_array_equal(e.latents.y_symbols, enc.latents.y_symbols)
            x = c.decompress(enc.data, output="float")
            # width-16 models: XLA:CPU's code for small synthesis crops sums differently (measured:
            # mbt2018, 64-px tiles, 0.0072 % of the values, ≤ 6.0e-8); real width: 0 (see below)
            np.testing.assert_allclose(x, x_ref, rtol=0, atol=1.8e-7)
            u8 = to_uint8(x) != to_uint8(x_ref)
            assert np.mean(u8) <= 1e-5, np.mean(u8)  # a value within 6e-8 of a rounding boundary: rare


def test_encoder_analysis_tiles_give_the_untiled_file(kodak_dir, monkeypatch):
    """The encoder's tiled analysis forced to 8-latent tiles (24 tiles on Kodak) with the shipped
    default model: the same file as the untiled encoder."""
    from lic_jax.coding import tiling

    ref, c = _codec("default", "off"), _codec("default", "on")
    monkeypatch.setattr(tiling, "ANALYSIS_TILE", 8)
    for i in (4, 15):
        img = S.kodak_image(i)
        assert c.encode(img).data == ref.encode(img).data, i


def test_tiling_switch_and_threshold():
    assert as_tiling(None) == Tiling() and as_tiling(0).mode == "off" and as_tiling(128) == Tiling("on", 128)
    t = Tiling()
    assert not t.active(1088, 1920) and t.active(1152, 1920) and t.active(4032, 6016)
    with pytest.raises(ValueError):
        as_tiling("sometimes")
    codec = _codec("bmshj2018-factorized", None)
    assert codec.tiling == Tiling()


def test_cli_with_small_tiles_writes_the_untiled_file(tmp_path, capsys):
    """`lic compress` / `lic decompress` of a 600 × 400 image with 128-pixel tiles (20 … 30 tiles)
    give the bytes and the image of the untiled run."""
    from lic_jax.cli import main

    S.make_artifact(tmp_path / "model", "mbt2018-mean", trained=True)
    art = str(tmp_path / "model")
    rng = np.random.default_rng(0)
    img = np.clip(S.kodak_image(8)[:400, :600].astype(np.int16) + rng.integers(-3, 4, (400, 600, 3)), 0, 255)
    src = S.write_png(tmp_path / "in.png", img.astype(np.uint8))
    for t in ("128", "0"):
        assert main(["compress", str(src), str(tmp_path / f"t{t}.lic"), "--checkpoint", art, "--tile", t, "-q"]) == 0
        assert main(["decompress", str(tmp_path / f"t{t}.lic"), str(tmp_path / f"t{t}.png"), "--checkpoint", art,
                     "--tile", t, "-q"]) == 0
    assert (tmp_path / "t128.lic").read_bytes() == (tmp_path / "t0.lic").read_bytes()
    assert (tmp_path / "t128.png").read_bytes() == (tmp_path / "t0.png").read_bytes()
    assert main(["compress", str(src), str(tmp_path / "x.lic"), "--checkpoint", art, "--tile", "-1"]) != 0
