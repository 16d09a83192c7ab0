"""lic_jax.layers.integer (issue 13: integer hyper-synthesis, Ballé, Johnston & Minnen, ICLR 2019).

Exactness against a numpy int64 reference at extreme inputs (accumulator exactly at its bound,
and bounds just below 2**31), tightness of check_bounds, round_shift against python ints, the
float fake-quant twin against the integer path, the float layers' geometry, and bit-identical
outputs across XLA flags, thread counts and jax versions (.venv-tfc: jax 0.4.30) in subprocesses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lic_jax.layers import conv as fconv
from lic_jax.layers import integer as il

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTEGER_PY = os.path.join(ROOT, "lic_jax", "layers", "integer.py")
TFC_PYTHON = os.path.join(ROOT, ".venv-tfc", "bin", "python")


# ---------------------------------------------------------------------------------------------
# numpy int64 reference (independent of jax)
# ---------------------------------------------------------------------------------------------
def ref_conv(x, w, stride):
    """Cross-correlation, zero padding k//2 on every side; int64."""
    x = np.asarray(x, np.int64)
    w = np.asarray(w, np.int64)
    k = w.shape[0]
    p = k // 2
    n, h, wd, _ = x.shape
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    ho, wo = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
    out = np.zeros((n, ho, wo, w.shape[3]), np.int64)
    for dh in range(k):
        for dw in range(k):
            patch = xp[:, dh:dh + stride * (ho - 1) + 1:stride, dw:dw + stride * (wo - 1) + 1:stride]
            out += np.einsum("nhwi,io->nhwo", patch, w[dh, dw])
    return out


def ref_conv_transpose(x, w, stride):
    """PyTorch ConvTranspose2d(padding=k//2, output_padding=s−1): out[i·s − p + t] += x[i]·W[t]; int64."""
    x = np.asarray(x, np.int64)
    w = np.asarray(w, np.int64)
    k = w.shape[0]
    p = k // 2
    n, h, wd, _ = x.shape
    full = np.zeros((n, (h - 1) * stride + k + stride, (wd - 1) * stride + k + stride, w.shape[3]), np.int64)
    for th in range(k):
        for tw in range(k):
            full[:, th:th + stride * (h - 1) + 1:stride, tw:tw + stride * (wd - 1) + 1:stride] += \
                np.einsum("nhwi,io->nhwo", x, w[th, tw])
    return full[:, p:p + h * stride, p:p + wd * stride]


def ref_round_shift(v, n):
    """Python-int reference: floor(v / 2**n + 1/2) (ties toward +inf); v · 2**−n for n < 0."""
    if n <= 0:
        return v * 2 ** (-n)
    return int((Fraction(v, 2**n) + Fraction(1, 2)).__floor__())


def ref_layer(layer, a):
    acc = (ref_conv_transpose if layer.transpose else ref_conv)(a, layer.kernel, layer.stride)
    return ref_post(layer, acc + np.asarray(layer.bias, np.int64))


def ref_post(layer, acc):
    """The rounding division by 2**n_c and the nonlinearity of an integer layer on an int64 accumulator."""
    n = layer.shifts.astype(np.int64)
    # floor(v / 2**n + 1/2) = floor((2v + 2**n) / 2**(n+1)) (int64 floor division; n ≤ 0: v · 2**−n)
    pos = np.floor_divide(2 * acc + 2 ** np.maximum(n, 0), 2 ** (np.maximum(n, 0) + 1))
    out = np.where(n > 0, pos, acc * 2 ** np.maximum(-n, 0))
    lo, hi = il.activation_range(layer.activation, layer.act_bits)
    if layer.activation in ("qrelu", "clip"):
        out = np.clip(out, lo, hi)
    elif layer.activation == "leaky":
        out = np.clip(out, lo, hi)
        neg = np.floor_divide(2 * out * 41 + 2**12, 2**13)
        out = np.where(out < 0, neg, out)
    return out


def _raw_layer(kernel, bias, stride, transpose, activation="none", act_bits=8, q=0, in_shift=0, out_shift=0):
    cout = kernel.shape[-1]
    return il.IntegerConv(np.asarray(kernel, np.int32), np.asarray(bias, np.int32), np.full(cout, q, np.int32),
                          in_shift, out_shift, stride, transpose, activation, act_bits)


# ---------------------------------------------------------------------------------------------
# exactness at the bound
# ---------------------------------------------------------------------------------------------
N = 192
WMAX = 127  # 2**(8−1) − 1


def _aligned_layer(transpose, bias_mag):
    """5×5 stride-2 N→N layer, every weight sign_c · 127, bias sign_c · bias_mag."""
    rng = np.random.default_rng(0)
    sign = rng.choice([-1, 1], N).astype(np.int64)
    kernel = np.broadcast_to(sign * WMAX, (5, 5, N, N))
    return _raw_layer(kernel, sign * bias_mag, 2, transpose), sign


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
@pytest.mark.parametrize("regime", ["act8", "int32_edge"])
def test_exact_at_the_bound(transpose, regime):
    bias_mag = 12345
    layer, sign = _aligned_layer(transpose, bias_mag)
    taps = 9 if transpose else 25  # transposed 5×5, stride 2: at most 3×3 taps reach one output
    if regime == "act8":
        in_max = 255
    else:  # the largest input for which the bound stays below 2**31 − 1
        in_max = (il.INT32_MAX - 1 - bias_mag) // (taps * N * WMAX)
    bound = il.accumulator_bound(layer, in_max)
    assert (bound == taps * N * WMAX * in_max + bias_mag).all()
    assert il.check_bounds([layer], in_max) == [int(bound.max())]
    if regime == "int32_edge":
        assert bound.max() > 2**30  # float32 could not represent these sums exactly
        with pytest.raises(ValueError, match="int32"):
            il.check_bounds([layer], in_max + 1)

    x = np.full((1, 6, 6, N), in_max, np.int32)
    out = np.asarray(jax.jit(lambda a: il.apply_integer_conv(layer, a))(x))
    assert out.dtype == np.int32
    ref = ref_layer(layer, x)
    np.testing.assert_array_equal(out.astype(np.int64), ref)
    # the accumulator sits exactly at the bound (interior positions, sign-aligned)
    np.testing.assert_array_equal(np.abs(ref).max(axis=(0, 1, 2)), bound)
    np.testing.assert_array_equal(np.sign(ref[0, 2, 2]), sign)


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "conv_transpose"])
def test_exact_random_signs_near_limit(transpose):
    """Random full-range weights and ±in_max inputs: every shift/activation path, int64 reference."""
    rng = np.random.default_rng(1)
    cin, cout = N, 24
    kernel = rng.integers(-WMAX, WMAX + 1, (5, 5, cin, cout))
    kernel[..., 0] = WMAX  # one channel at full magnitude
    bias = rng.integers(-(2**20), 2**20, cout)
    q = rng.integers(0, 6, cout)
    layers = []
    for act in ("none", "qrelu", "leaky"):
        lay = il.IntegerConv(kernel.astype(np.int32), bias.astype(np.int32), q.astype(np.int32), 9, 2, 2,
                             transpose, act, 10)
        in_max = (il.INT32_MAX - 2**20 - 2**14) // int(il.accumulator_bound(lay, 1).max())
        il.check_bounds([lay], in_max)
        x = (rng.choice([-1, 1], (1, 7, 5, cin)) * in_max).astype(np.int32)
        x[0, 3, 2] = in_max
        out = np.asarray(il.apply_integer_conv(lay, x)).astype(np.int64)
        np.testing.assert_array_equal(out, ref_layer(lay, x))
        layers.append(lay)


def test_taps_exact_at_the_bound():
    """apply_integer_taps (the context model's window dot, mbt2018-int): mask-'A' 5×5 kernel at full
    magnitude, M = 320 (mbt2018's widest), 12-bit ŷ at ±2047 — the largest accumulator of the portable
    models (12 causal taps · 320 · 127 · 2047 ≈ 1.0·10**9) — and at the int32 edge; int64 reference."""
    from lic_jax.layers import causal_mask

    rng = np.random.default_rng(7)
    M, cout = 320, 16
    sign = rng.choice([-1, 1], cout)
    mask = causal_mask(5, "A")[:, :, None, None].astype(np.int64)
    kernel = np.broadcast_to(sign * WMAX, (5, 5, M, cout)) * mask
    bias = sign * 999
    for in_max, act, bits, q in ((2047, "clip", 12, 20), (None, "none", 8, 3)):
        if in_max is None:  # the largest input for which the bound stays below 2**31 − 1
            in_max = (il.INT32_MAX - 1 - 999) // (12 * M * WMAX)
        lay = _raw_layer(kernel, bias, 1, False, act, act_bits=bits, q=q, in_shift=0, out_shift=0)
        bound = il.accumulator_bound(lay, in_max)
        assert (bound == 12 * M * WMAX * in_max + 999).all()
        il.check_bounds([lay], in_max)
        patches = np.full((3, 5, 5, M), in_max, np.int32) * rng.choice([-1, 1], (3, 1, 1, 1)).astype(np.int32)
        patches[2, 0, 0, :7] = 1  # one window off the bound (the last bits matter)
        got = np.asarray(jax.jit(lambda a, lay=lay: il.apply_integer_taps(lay, a))(patches)).astype(np.int64)
        acc = np.einsum("khwi,hwio->ko", patches.astype(np.int64), kernel.astype(np.int64)) + bias
        np.testing.assert_array_equal(np.abs(acc).max(axis=0), bound)  # the accumulator sits at the bound
        n = lay.shifts.astype(np.int64)
        want = np.floor_divide(2 * acc + 2**n, 2 ** (n + 1))
        if act == "clip":
            assert np.abs(want).max() < 2 ** (bits - 1)  # not saturated: every bit of the sum is checked
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="int32"):
        il.check_bounds([lay], in_max + 1)
    with pytest.raises(ValueError, match="stride-1"):
        il.apply_integer_taps(_raw_layer(kernel, bias, 2, False), patches)


def test_check_bounds_chains_through_layers():
    """The second layer's input bound comes from the first layer's activation range."""
    k = np.full((3, 3, 4, 4), WMAX)
    l1 = _raw_layer(k, np.zeros(4), 1, False, "qrelu", act_bits=8, q=3, in_shift=0, out_shift=0)
    b2 = il.accumulator_bound(l1, 255)
    assert il.check_bounds([l1, l1], 255) == [int(b2.max())] * 2
    l_wide = _raw_layer(k, np.zeros(4), 1, False, "qrelu", act_bits=23, q=0)
    il.check_bounds([l1, l_wide], 255)  # 255 in, 2**23 − 1 out: fine
    with pytest.raises(ValueError, match="layer 2"):  # but 2**23 − 1 into 9·4·127 taps is not
        il.check_bounds([l1, l_wide, l_wide], 255)
    # a negative shift (left shift) is bounded too
    l_left = _raw_layer(k, np.zeros(4), 1, False, "none", q=0, in_shift=0, out_shift=25)
    with pytest.raises(ValueError, match="layer 0"):
        il.check_bounds([l_left], 255)


# ---------------------------------------------------------------------------------------------
# round_shift and the nonlinearities
# ---------------------------------------------------------------------------------------------
def test_round_shift_ties_and_negatives():
    vals = [0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, 7, -7, 8, -8, 11, -11, 12, -12, 1023, -1023, 1024, -1024,
            2**30, -(2**30), 2**31 - 2**20, -(2**31) + 2**20]
    for n in (0, 1, 2, 3, 10, 19):
        got = np.asarray(il.round_shift(np.asarray(vals, np.int32), n)).tolist()
        assert got == [ref_round_shift(v, n) for v in vals], n
    assert np.asarray(il.round_shift(np.int32(-3), 1)) == -1 and np.asarray(il.round_shift(np.int32(3), 1)) == 2
    small = np.arange(-40, 41, dtype=np.int32)
    assert np.asarray(il.round_shift(small, -3)).tolist() == [v * 8 for v in small.tolist()]
    # per-channel shifts (mixed positive / zero / negative) equal the scalar version channel by channel
    rng = np.random.default_rng(2)
    x = rng.integers(-(2**24), 2**24, (3, 5, 6)).astype(np.int32)
    x[0, 0] = [-12, -4, 12, 4, -2, 7]  # ties
    n = np.array([3, 0, 2, -2, 1, 5])
    got = np.asarray(il.round_shift_per_channel(x, n))
    for c in range(6):
        want = [ref_round_shift(int(v), int(n[c])) for v in x[..., c].ravel()]
        assert got[..., c].ravel().tolist() == want


def test_nonlinearities():
    x = np.arange(-600, 600, dtype=np.int32)
    np.testing.assert_array_equal(np.asarray(il.qrelu(x, 8)), np.clip(x, 0, 255))
    got = np.asarray(il.qleaky_relu(x, 10)).tolist()
    want = [ref_round_shift(v * 41, 12) if v < 0 else v for v in np.clip(x, -512, 511).tolist()]
    assert got == want
    assert il.qleaky_relu(np.int32(-49), 8) == 0 and il.qleaky_relu(np.int32(-50), 8) == -1


# ---------------------------------------------------------------------------------------------
# geometry = lic_jax's float layers; quantisation; fake-quant twin
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("k,stride", [(5, 2), (3, 1)])
def test_geometry_matches_float_layers(transpose, k, stride):
    rng = np.random.default_rng(3)
    x = rng.integers(-20, 21, (2, 5, 7, 6)).astype(np.int32)
    w = rng.integers(-30, 31, (k, k, 6, 4))
    lay = _raw_layer(w, np.zeros(4), stride, transpose)
    out = np.asarray(il.apply_integer_conv(lay, x))
    xf, wf = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
    if transpose:
        for impl in ("transpose", "subpixel"):
            f = np.asarray(fconv.conv_transpose2d(xf, wf, stride, impl=impl))  # small ints: exact in float32
            np.testing.assert_array_equal(out, f.astype(np.int64))
    else:
        np.testing.assert_array_equal(out, np.asarray(fconv.conv2d(xf, wf, stride)).astype(np.int64))


def test_quantize_conv_exponents():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(3, 3, 5, 7)).astype(np.float32) * np.float32(2.0) ** rng.integers(-12, 3, 7)
    w[..., 3] = 0
    w[..., 4:6] = np.clip(w[..., 4:6], -1e-3, 1e-3)
    w[0, 0, 0, 4] = 127 / 2**5  # exactly at the limit with q = 5
    w[0, 0, 0, 5] = np.nextafter(np.float32(127 / 2**5), np.float32(10))  # one ulp above: q = 4
    b = rng.normal(size=7).astype(np.float32)
    lay = il.quantize_conv(w, b, in_shift=3, weight_bits=8)
    assert lay.q[4] == 5 and lay.q[5] == 4 and lay.q[3] == 7
    for c in range(7):
        amax = float(np.abs(w[..., c].astype(np.float64)).max())
        if amax:
            assert amax * 2.0 ** int(lay.q[c]) <= 127 < amax * 2.0 ** (int(lay.q[c]) + 1)
    assert np.abs(lay.kernel).max() <= 127 and lay.kernel.dtype == np.int32
    np.testing.assert_array_equal(lay.kernel, np.rint(w.astype(np.float64) * 2.0 ** lay.q).astype(np.int32))
    np.testing.assert_array_equal(lay.bias, np.rint(b.astype(np.float64) * 2.0 ** (lay.q + 3)).astype(np.int32))
    _, qf = il.fake_quant_weights(jnp.asarray(w), 8)
    np.testing.assert_array_equal(np.asarray(qf), lay.q)


@pytest.mark.parametrize("transpose,stride,act", [(False, 2, "qrelu"), (True, 2, "leaky"), (False, 1, "none"),
                                                   (True, 2, "qrelu")])
def test_fake_quant_twin_equals_integer_path(transpose, stride, act):
    rng = np.random.default_rng(5)
    cin, cout, in_shift, out_shift, bits = 12, 10, 4, 5, 8
    w = (rng.normal(size=(5, 5, cin, cout)) * 0.1).astype(np.float32)
    b = (rng.normal(size=cout) * 0.5).astype(np.float32)
    lay = il.quantize_conv(w, b, in_shift, 8, out_shift=out_shift, stride=stride, transpose=transpose,
                           activation=act, act_bits=bits)
    a = rng.integers(0 if act == "qrelu" else -128, 128, (2, 6, 6, cin)).astype(np.int32)
    bound = il.check_bounds([lay], 128)
    assert max(bound) + 2 ** int(lay.shifts.max()) < 2**24  # the documented exactness condition
    got_int = np.asarray(il.apply_integer_conv(lay, a))
    xf = jnp.asarray(a, jnp.float32) * 2.0**-in_shift
    fq = jax.jit(lambda w, b, x: il.fake_quant_conv(w, b, x, in_shift=in_shift, out_shift=out_shift, stride=stride,
                                                    transpose=transpose, activation=act, act_bits=bits))
    got_f = np.asarray(fq(w, b, xf))
    np.testing.assert_array_equal(got_f, got_int.astype(np.float32) * np.float32(2.0**-out_shift))
    assert (np.diff(np.unique(got_int)) > 0).all() and len(np.unique(got_int)) > 20  # not degenerate


def test_fake_quant_straight_through_gradients():
    x = jnp.asarray([-1.0, -0.01, 0.3, 1.2, 15.9, 16.5], jnp.float32)
    g = jax.jit(jax.grad(lambda v: il.fake_quant_act(v, 4, 8).sum()))(x)  # range [0, 255/16 = 15.9375]
    np.testing.assert_array_equal(np.asarray(g), [0, 0, 1, 1, 1, 0])
    w = jnp.asarray(np.random.default_rng(6).normal(size=(3, 3, 2, 4)), jnp.float32)
    gw = jax.jit(jax.grad(lambda v: (il.fake_quant_weights(v, 8)[0] * 3.0).sum()))(w)
    np.testing.assert_array_equal(np.asarray(gw), np.full(w.shape, 3.0, np.float32))
    gl = jax.jit(jax.grad(lambda v: il.fake_quant_leaky(v, 4, 8).sum()))(jnp.asarray([-2.0, 2.0, -9.0]))
    np.testing.assert_allclose(np.asarray(gl), [41 / 4096, 1, 0])


# ---------------------------------------------------------------------------------------------
# the same bits under other XLA flags, thread counts and jax versions
# ---------------------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import importlib.util, sys
    import numpy as np
    spec = importlib.util.spec_from_file_location("lic_integer", sys.argv[1])
    il = importlib.util.module_from_spec(spec)
    sys.modules["lic_integer"] = il
    spec.loader.exec_module(il)
    d = np.load(sys.argv[2])
    layers = []
    for i in range(int(d["n"])):
        s = d[f"s{i}"]
        layers.append(il.IntegerConv(d[f"k{i}"], d[f"b{i}"], d[f"q{i}"], int(s[0]), int(s[1]), int(s[2]),
                                     bool(s[3]), str(d[f"act{i}"]), int(s[4])))
    il.check_bounds(layers, int(d["in_max"]))
    import jax
    out = np.asarray(jax.jit(lambda a: il.apply_integer_network(layers, a))(d["x"]))
    np.save(sys.argv[3], out)
    print(jax.__version__, jax.device_count(), out.dtype, out.shape)
""")


def _network():
    """A small hyper-synthesis-shaped net: deconv 5×5/2 → deconv 5×5/2 → conv 3×3/1 (int, mixed acts)."""
    rng = np.random.default_rng(7)
    c = 24
    specs = [(16, c, True, 2, 5, "qrelu"), (c, c, True, 2, 5, "leaky"), (c, 20, False, 1, 3, "qrelu")]
    layers, shift = [], 3
    for cin, cout, tr, s, k, act in specs:
        w = (rng.normal(size=(k, k, cin, cout)) * 0.15).astype(np.float32)
        b = (rng.normal(size=cout) * 0.3).astype(np.float32)
        layers.append(il.quantize_conv(w, b, shift, 8, out_shift=4, stride=s, transpose=tr, activation=act,
                                       act_bits=10))
        shift = 4
    x = rng.integers(-(2**9), 2**9, (2, 5, 6, 16)).astype(np.int32)
    return layers, x, 2**9


@pytest.fixture(scope="module")
def network_case(tmp_path_factory):
    layers, x, in_max = _network()
    il.check_bounds(layers, in_max)
    d = tmp_path_factory.mktemp("intnet")
    arrays = {"n": len(layers), "x": x, "in_max": in_max}
    for i, lay in enumerate(layers):
        arrays.update({f"k{i}": lay.kernel, f"b{i}": lay.bias, f"q{i}": lay.q, f"act{i}": lay.activation,
                       f"s{i}": np.array([lay.in_shift, lay.out_shift, lay.stride, int(lay.transpose), lay.act_bits])})
    np.savez(d / "net.npz", **arrays)
    (d / "child.py").write_text(CHILD)
    ref = x
    for lay in layers:
        ref = ref_layer(lay, ref)
    here = np.asarray(il.apply_integer_network(layers, x))
    np.testing.assert_array_equal(here.astype(np.int64), ref)
    assert len(np.unique(here)) > 50
    return d, here


def _run_child(python, d, name, env_extra=None, prefix=()):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update({"JAX_PLATFORMS": "cpu", **(env_extra or {})})
    out = d / f"{name}.npy"
    r = subprocess.run([*prefix, python, str(d / "child.py"), INTEGER_PY, str(d / "net.npz"), str(out)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{name}: {r.stderr[-3000:]}"
    return np.load(out), r.stdout


def _variants():
    v = [("fast_math", {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"}, ()),
         ("one_thread", {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}, ()),
         ("4_devices", {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}, ())]
    if shutil.which("taskset"):
        v.append(("taskset_cpu0", {}, ("taskset", "-c", "0")))
    return v


def test_bit_identical_under_xla_flags_and_threads(network_case):
    d, here = network_case
    with ThreadPoolExecutor(2) as pool:  # the children are independent processes
        runs = {name: pool.submit(_run_child, sys.executable, d, name, env, prefix)
                for name, env, prefix in _variants()}
        for name, fut in runs.items():
            out, log = fut.result()
            if name == "4_devices":
                assert " 4 int32" in log, log
            assert out.dtype == np.int32
            np.testing.assert_array_equal(out, here, err_msg=name)


def test_bit_identical_in_tfc_env_jax_0_4(network_case):
    if not os.path.exists(TFC_PYTHON):
        pytest.skip(f"{TFC_PYTHON} does not exist (the second environment is not installed)")
    d, here = network_case
    out, log = _run_child(TFC_PYTHON, d, "tfc")
    assert log.startswith("0.4."), log  # really another jax version
    np.testing.assert_array_equal(out, here)
