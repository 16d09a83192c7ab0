"""Toderici, Vincent, Johnston, Hwang, Minnen, Shor, Covell: "Full Resolution Image Compression
with Recurrent Neural Networks", CVPR 2017 (arXiv:1608.05148; seed 003;
``/work/shared/docs/SYSTEMS.md`` §7) — the recurrent encoder / binarizer / decoder, iterated on
the residual. (The seed file holds slides only; paper parts are cited by section name and
Fig. 1, the single-iteration architecture figure.) Registered as ``toderici2017``
(``lic_jax.models.registry``; objective ``'iterative-l1'``: ``lic_jax.train.iterative`` trains it
through ``train.py``); docs/TODERICI.md.

Network (paper Fig. 1; layer table of SYSTEMS.md §7, which follows the PyTorch port
"RNN-PT"; "k/hk" = input-conv kernel / hidden-conv kernel):

* encoder E: conv 3×3 s2 64 → RNN 3/1 s2 256 → RNN 3/1 s2 512 → RNN 3/1 s2 512 (H/16 × W/16)
* binarizer B: conv 1×1 512→32, tanh, then b ∈ {−1, +1} (paper "Binarization"; Toderici
  et al. ICLR 2016):
  training draws b = +1 with probability (1 + x)/2 and passes the gradient straight through
  (identity); evaluation takes sign(x) with sign(0) := +1, so codes are always ±1.
  32 bits per 16×16 block per iteration = 1/8 bpp.
* decoder D: conv 1×1 32→512 → RNN 3/1 512 → D2S → RNN 3/1 512 → D2S → RNN 3/3 256 → D2S →
  RNN 3/3 128 → D2S → conv 1×1 32→3, tanh / 2 (the port's output layer). D2S = depth-to-space
  ×2 with PyTorch ``pixel_shuffle``'s channel order (512→128, 512→128, 256→64, 128→32 ch).
* no biases anywhere (as the port); ``width`` scales every channel count except the 32 bits and
  the 3 colours (``width=1/16`` is the tests' tiny model).

Recurrent cells (``cell``), state zero at t = 1, input conv with the layer's kernel and stride,
hidden conv with the hidden kernel and stride 1 ("same" padding k//2 as the port):

* ``'lstm'`` (paper "Types of Recurrent Units"; port conv_rnn.py): [i, f, g, o] = W∗x + U∗h;
  c′ = σ(f)·c + σ(i)·tanh(g), h′ = σ(o)·tanh(c′); output h′; state (h, c).
* ``'gru'`` (same paper section; the GRU of Cho et al. 2014, convolutional):
  z = σ(W_z∗x + U_z∗h), r = σ(W_r∗x + U_r∗h), n = tanh(W∗x + U∗(r·h)),
  h′ = (1 − z)·h + z·n; output h′; state (h,).
* ``'residual-gru'`` (paper: "Residual GRU", a GRU/ResNet hybrid; its exact internals are
  ambiguous, SYSTEMS.md §7/§12.5): the GRU above whose *output* adds a learned projection of the
  input, o = h′ + W_o∗x (W_o: conv with the layer's input kernel and stride, since channels and
  resolution change across a layer); the recurrent state stays h′ (the residual path does not
  enter the recurrence). [I]

Reconstruction (paper "Reconstruction Framework", the iteration equations; ``mode``), in the
port's shifted domain x_s = x − 0.5:
r_0 = x_s, x̂_0 = 0; b_t = B(E_t(r_{t−1})); x̂_t = D_t(b_t) + γ·x̂_{t−1}; r_t = x_s − x̂_t.

* ``'one-shot'``: γ = 0, the decoder emits the whole (shifted) image each iteration;
* ``'additive'``: γ = 1, the decoder emits the residual (the port's training setup);
* ``'residual-scaling'`` (paper "Residual Scaling", the "scaled-additive" framework): γ = 1, and
  b_t = B(E_t(g_t ⊙ r_{t−1})), x̂_t = D_t(b_t) ⊘ g_t + x̂_{t−1}, with g_t = G(x̂_{t−1}) > 0
  predicted by a gain net G from the previous reconstruction only, so the decoder can recompute
  it. The paper does not list G's layers; ours [I]: 4 × (conv 3×3 s2 ``gain_ch``, ReLU)
  → conv 1×1 → a, g = softplus(a + log(e − 1)), one gain per 16×16 block (the bits' grid),
  nearest-upsampled to pixels. No biases, so G(0) = softplus(log(e − 1)) = 1 exactly: g_1 = 1
  (x̂_0 = 0), and a freshly initialised net starts near the additive model.

The returned reconstructions are x̂_t + 0.5 (image domain, not clipped). Loss (paper:
β·Σ_t |r_t|; port: mean |r_t| per iteration, summed, / iterations): :func:`l1_loss`.

Iterations run under ``jax.lax.scan`` (a pure function over explicit ``variables``), so the
number of iterations is a static argument and a 16-iteration unroll traces the cells once.
The encoder side (:func:`encode_iteration`) and decoder side (:func:`decode_iteration`) are
separate; the decoder side needs only the bits and its own carry (RNN state, x̂_{t−1}, gain), so
a progressive decoder runs it iteration by iteration (:func:`decode` for k iterations at once),
and :func:`unroll` is exactly encode_iteration ∘ decode_iteration per step.

Images: NHWC in [0, 1], float32 by default (``dtype=jnp.bfloat16`` computes the convolutions in
bf16; parameters, RNN states, bits and outputs stay float32). Height and width must be
multiples of 16 (four stride-2 stages; ValueError otherwise). Randomness only through explicit
PRNG keys (one per iteration, split from ``key``; training only).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["Toderici2017", "ConvRNNCell", "Encoder", "Decoder", "GainNet", "binarize", "depth_to_space",
           "initial_carry", "encode_iteration", "decode_iteration", "unroll", "decode", "l1_loss", "CELLS", "MODES",
           "DOWNSAMPLING", "BITS"]

CELLS = ("lstm", "gru", "residual-gru")
MODES = ("one-shot", "additive", "residual-scaling")
DOWNSAMPLING = 16
BITS = 32  # bits per 16×16 block per iteration (1/8 bpp)
ENC_CH = (64, 256, 512, 512)  # conv, rnn1, rnn2, rnn3
DEC_CH = (512, 512, 512, 256, 128)  # conv1, rnn1, rnn2, rnn3, rnn4
DEC_HIDDEN_KERNELS = (1, 1, 3, 3)
GAIN_CH = 32
_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_ONE) == 1


def _conv(features: int, kernel: int, stride: int, dtype, name: str | None = None):
    p = kernel // 2
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=((p, p), (p, p)), use_bias=False,
                   dtype=dtype, param_dtype=jnp.float32, name=name)


def depth_to_space(x, r: int = 2):
    """(B, H, W, C·r²) → (B, rH, rW, C); output channel c at offset (i, j) is input channel
    c·r² + i·r + j (PyTorch ``pixel_shuffle`` order, so port weights map 1:1)."""
    B, H, W, C = x.shape
    if C % (r * r):
        raise ValueError(f"depth_to_space ×{r} needs channels divisible by {r * r}, got {C}")
    x = x.reshape(B, H, W, C // (r * r), r, r)
    return x.transpose(0, 1, 4, 2, 5, 3).reshape(B, H * r, W * r, C // (r * r))


# ------------------------------------------------------------------------------------------------
# binarizer (paper "Binarization"; Toderici et al. ICLR 2016)
# ------------------------------------------------------------------------------------------------
@jax.custom_vjp
def _straight_through(x, b):
    return b


def _st_fwd(x, b):
    return b, None


def _st_bwd(_, g):
    return g, jnp.zeros_like(g)


_straight_through.defvjp(_st_fwd, _st_bwd)


def binarize(x, key=None, train: bool = False):
    """x ∈ [−1, 1] → b ∈ {−1, +1} (same dtype as x).

    ``train``: b = +1 with probability (1 + x)/2 (needs ``key``), gradient db/dx = identity
    (straight-through; the value is exactly ±1, not x + stop_gradient(b − x)).
    Otherwise b = sign(x) with sign(0) = +1, zero gradient.
    """
    one = jnp.ones((), x.dtype)
    if not train:
        return jnp.where(x >= 0, one, -one)
    if key is None:
        raise ValueError("binarize(train=True) needs an explicit PRNG key")
    u = jax.random.uniform(key, x.shape, jnp.float32)
    b = jnp.where(u < (1.0 + x.astype(jnp.float32)) / 2.0, one, -one)
    return _straight_through(x, b)


# ------------------------------------------------------------------------------------------------
# recurrent cells
# ------------------------------------------------------------------------------------------------
class ConvRNNCell(nn.Module):
    """One convolutional recurrent layer (``cell`` ∈ CELLS; equations in the module docstring).
    ``__call__(x, state) → (output, new_state)``; the state is a tuple of float32 arrays of
    shape (B, H_in/stride, W_in/stride, features): (h, c) for 'lstm', (h,) for the GRUs."""

    features: int
    kernel: int = 3
    hidden_kernel: int = 1
    stride: int = 1
    cell: str = "lstm"
    dtype: Any = None

    def initial_state(self, batch: int, height: int, width: int):
        """Zero state for an input of spatial size (height, width) (before this layer's stride)."""
        return _zero_state(self.cell, batch, height // self.stride, width // self.stride, self.features)

    @nn.compact
    def __call__(self, x, state):
        F, d = self.features, self.dtype
        if self.cell == "lstm":
            h, c = state
            gates = _conv(4 * F, self.kernel, self.stride, d, "ih")(x) + _conv(4 * F, self.hidden_kernel, 1, d, "hh")(h)
            i, f, g, o = jnp.split(gates.astype(jnp.float32), 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return h, (h, c)
        if self.cell not in ("gru", "residual-gru"):
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        (h,) = state
        xz, xr, xn = jnp.split(_conv(3 * F, self.kernel, self.stride, d, "ih")(x).astype(jnp.float32), 3, axis=-1)
        hz, hr = jnp.split(_conv(2 * F, self.hidden_kernel, 1, d, "hh")(h).astype(jnp.float32), 2, axis=-1)
        z = jax.nn.sigmoid(xz + hz)
        r = jax.nn.sigmoid(xr + hr)
        n = jnp.tanh(xn + _conv(F, self.hidden_kernel, 1, d, "hn")(r * h).astype(jnp.float32))
        h = (1.0 - z) * h + z * n
        out = h
        if self.cell == "residual-gru":
            out = h + _conv(F, self.kernel, self.stride, d, "ox")(x).astype(jnp.float32)
        return out, (h,)


def _zero_state(cell: str, batch: int, height: int, width: int, features: int):
    z = jnp.zeros((batch, height, width, features), jnp.float32)
    return (z, z) if cell == "lstm" else (z,)


def _encoder_state(cell, channels, batch, height, width):
    """Encoder recurrent layer i (0-based) works at 1/2^(i+2) of the image size."""
    return tuple(_zero_state(cell, batch, height >> (i + 2), width >> (i + 2), c) for i, c in enumerate(channels[1:]))


def _decoder_state(cell, channels, batch, height, width):
    """Decoder recurrent layer i (0-based) works at 1/2^(4−i) of the image size."""
    return tuple(_zero_state(cell, batch, height >> (4 - i), width >> (4 - i), c) for i, c in enumerate(channels[1:]))


def _scaled(channels, width: float):
    return tuple(max(1, int(round(c * width))) for c in channels)


class Encoder(nn.Module):
    """E: conv 3×3 s2 → 3 recurrent layers 3×3/1×1 s2 (Fig. 1). ``(x, state) → (features at
    H/16, state)``."""

    channels: tuple = ENC_CH
    cell: str = "lstm"
    dtype: Any = None

    def cells(self):
        return [ConvRNNCell(c, 3, 1, 2, self.cell, self.dtype, name=f"rnn{i + 1}")
                for i, c in enumerate(self.channels[1:])]

    def initial_state(self, batch: int, height: int, width: int):
        """Zero state for an image of size (height, width)."""
        return _encoder_state(self.cell, self.channels, batch, height, width)

    @nn.compact
    def __call__(self, x, state):
        x = _conv(self.channels[0], 3, 2, self.dtype, "conv")(x)
        new = []
        for layer, s in zip(self.cells(), state):
            x, s = layer(x, s)
            new.append(s)
        return x, tuple(new)


class Decoder(nn.Module):
    """D: conv 1×1 → 4 × (recurrent layer, depth-to-space ×2) → conv 1×1 → tanh/2 (Fig. 1).
    ``(bits, state) → (float32 (B, H, W, 3) in [−0.5, 0.5], state)``."""

    channels: tuple = DEC_CH
    cell: str = "lstm"
    dtype: Any = None

    def initial_state(self, batch: int, height: int, width: int):
        """Zero state for an image of size (height, width)."""
        return _decoder_state(self.cell, self.channels, batch, height, width)

    @nn.compact
    def __call__(self, b, state):
        x = _conv(self.channels[0], 1, 1, self.dtype, "conv1")(b)
        new = []
        for i, (c, hk, s) in enumerate(zip(self.channels[1:], DEC_HIDDEN_KERNELS, state)):
            x, s = ConvRNNCell(c, 3, hk, 1, self.cell, self.dtype, name=f"rnn{i + 1}")(x, s)
            new.append(s)
            x = depth_to_space(x, 2)
        x = _conv(3, 1, 1, self.dtype, "conv2")(x)
        return jnp.tanh(x.astype(jnp.float32)) / 2.0, tuple(new)


class GainNet(nn.Module):
    """G (residual scaling; layers ours [I]): x̂_{t−1} (B, H, W, 3) → gain > 0 per
    16×16 block, nearest-upsampled to (B, H, W, 1); G(0) = 1 exactly (no biases)."""

    channels: int = GAIN_CH
    dtype: Any = None

    @nn.compact
    def __call__(self, x_hat):
        a = x_hat
        for i in range(4):
            a = nn.relu(_conv(self.channels, 3, 2, self.dtype, f"conv{i + 1}")(a))
        a = _conv(1, 1, 1, self.dtype, "out")(a).astype(jnp.float32)
        g = jax.nn.softplus(a + _SOFTPLUS_ONE)
        return jnp.repeat(jnp.repeat(g, DOWNSAMPLING, axis=1), DOWNSAMPLING, axis=2)


# ------------------------------------------------------------------------------------------------
# the model: one iteration's pieces as methods; the loop is the pure functions below
# ------------------------------------------------------------------------------------------------
class Toderici2017(nn.Module):
    """Toderici et al. 2017 RNN codec (module docstring). ``model.init(key, x)`` creates all
    parameters (one iteration); ``model.apply(variables, x, iterations=k, train=..., key=...)``
    is :func:`unroll` (a dict with ``x_hat`` (k, B, H, W, 3), ``bits`` (k, B, H/16, W/16, 32),
    ``l1`` (k,), ``loss``). ``iterations`` is the number of iterations the model is trained and
    coded with (the default of ``apply``; 16 = 2 bpp before entropy coding)."""

    cell: str = "lstm"
    mode: str = "additive"
    width: float = 1.0
    iterations: int = 16
    dtype: Any = None

    downsampling = DOWNSAMPLING
    bits_per_block = BITS

    def check_hparams(self):
        """ValueError for an unknown cell or mode, a width whose decoder channels do not divide
        by 4, or iterations < 1 (``registry.get_model`` calls this)."""
        self._check()
        _ = self.dec_channels
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {self.iterations!r}")

    def _check(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    @property
    def enc_channels(self):
        return _scaled(ENC_CH, self.width)

    @property
    def dec_channels(self):
        ch = _scaled(DEC_CH, self.width)
        if any(c % 4 for c in ch[1:]):
            raise ValueError(f"width {self.width} gives decoder channels {ch}; the recurrent ones must be "
                             "multiples of 4 (depth-to-space ×2)")
        return ch

    def setup(self):
        self._check()
        self.encoder = Encoder(self.enc_channels, self.cell, self.dtype)
        self.binarizer = _conv(BITS, 1, 1, self.dtype)
        self.decoder = Decoder(self.dec_channels, self.cell, self.dtype)
        if self.mode == "residual-scaling":
            self.gain_net = GainNet(_scaled((GAIN_CH,), self.width)[0], self.dtype)

    def encode_step(self, r, enc_state, key=None, train: bool = False):
        """E_t then B: (scaled) residual (B, H, W, 3) → (bits (B, H/16, W/16, 32) float32 ±1, state)."""
        f, enc_state = self.encoder(r, enc_state)
        x = jnp.tanh(self.binarizer(f).astype(jnp.float32))
        return binarize(x, key, train), enc_state

    def decode_step(self, bits, dec_state):
        """D_t: bits → (raw decoder output (B, H, W, 3) in [−0.5, 0.5], state)."""
        return self.decoder(bits, dec_state)

    def gain(self, x_hat_s):
        """g_{t+1} = G(x̂_t) for residual scaling (x̂ in the shifted domain)."""
        return self.gain_net(x_hat_s)

    def __call__(self, x, iterations: int | None = None, train: bool = False, key=None):
        if self.is_initializing():  # parameter shapes only: the sign binarizer (no key needed)
            enc, dec = initial_carry(self, *x.shape[:3])
            bits, _ = self.encode_step(x - 0.5, enc["rnn"], None, False)
            out, _ = self.decode_step(bits, dec["rnn"])
            if self.mode == "residual-scaling":
                self.gain(out)
            return out
        k = self.iterations if iterations is None else iterations
        return unroll(self.clone(parent=None), self.variables, x, k, train, key)


# ------------------------------------------------------------------------------------------------
# pure functions over explicit variables: the iteration loop and the progressive decoder
# ------------------------------------------------------------------------------------------------
def _check_size(height: int, width: int):
    if height % DOWNSAMPLING or width % DOWNSAMPLING or height <= 0 or width <= 0:
        raise ValueError(f"Toderici2017 needs height and width that are positive multiples of {DOWNSAMPLING}, "
                         f"got {height}×{width} (pad the image first)")


def initial_carry(model: Toderici2017, batch: int, height: int, width: int):
    """(encoder carry, decoder carry) before iteration 1: zero RNN states, x̂_0 = 0, g_1 = 1.
    The decoder carry ``{'rnn', 'x_hat', ['gain']}`` is everything a progressive decoder keeps."""
    model._check()
    _check_size(height, width)
    enc = {"rnn": _encoder_state(model.cell, model.enc_channels, batch, height, width)}
    dec = {"rnn": _decoder_state(model.cell, model.dec_channels, batch, height, width),
           "x_hat": jnp.zeros((batch, height, width, 3), jnp.float32)}
    if model.mode == "residual-scaling":
        dec["gain"] = jnp.ones((batch, height, width, 1), jnp.float32)
    return enc, dec


def encode_iteration(model: Toderici2017, variables, x, enc_carry, dec_carry, key=None, train: bool = False):
    """Encoder side of iteration t: r_{t−1} = (x − 0.5) − x̂_{t−1} (× g_t when residual scaling)
    → (bits_t, encoder carry). ``dec_carry`` is the decoder carry *before* iteration t (the
    encoder runs a copy of the decoder)."""
    r = (x.astype(jnp.float32) - 0.5) - dec_carry["x_hat"]
    if model.mode == "residual-scaling":
        r = r * dec_carry["gain"]
    bits, rnn = model.apply(variables, r, enc_carry["rnn"], key, train, method="encode_step")
    return bits, {"rnn": rnn}


def decode_iteration(model: Toderici2017, variables, bits, dec_carry):
    """Decoder side of iteration t from bits_t and the decoder carry alone → (x̂_t + 0.5 (image
    domain), decoder carry). x̂_t = D_t(b_t) [⊘ g_t] + γ·x̂_{t−1}."""
    out, rnn = model.apply(variables, bits, dec_carry["rnn"], method="decode_step")
    new = {"rnn": rnn}
    if model.mode == "one-shot":
        x_hat = out
    elif model.mode == "additive":
        x_hat = out + dec_carry["x_hat"]
    else:
        x_hat = out / dec_carry["gain"] + dec_carry["x_hat"]
        new["gain"] = model.apply(variables, x_hat, method="gain")
    new["x_hat"] = x_hat
    return x_hat + 0.5, new


def unroll(model: Toderici2017, variables, x, iterations: int, train: bool = False, key=None):
    """The joint model for ``iterations`` (static) steps under ``lax.scan``. x: (B, H, W, 3) in
    [0, 1], H and W multiples of 16; ``train`` needs ``key`` (split into one key per iteration).

    Returns {'x_hat': (k, B, H, W, 3) reconstructions after 1..k iterations, 'bits':
    (k, B, H/16, W/16, 32) in {−1, +1}, 'l1': (k,) mean |r_t| per iteration, 'loss': l1 mean}.
    """
    B, H, W, _ = x.shape
    enc, dec = initial_carry(model, B, H, W)
    if train and key is None:
        raise ValueError("unroll(train=True) needs an explicit PRNG key")
    keys = jax.random.split(key, iterations) if train else None
    x32 = x.astype(jnp.float32)

    def step(carry, k):
        enc, dec = carry
        bits, enc = encode_iteration(model, variables, x32, enc, dec, k, train)
        x_hat, dec = decode_iteration(model, variables, bits, dec)
        return (enc, dec), (x_hat, bits, jnp.mean(jnp.abs(x32 - x_hat)))

    _, (x_hats, bits, l1) = jax.lax.scan(step, (enc, dec), keys, length=iterations)
    return {"x_hat": x_hats, "bits": bits, "l1": l1, "loss": jnp.mean(l1)}


def decode(model: Toderici2017, variables, bits, dec_carry=None):
    """Progressive decoder from bits alone: bits (k, B, H/16, W/16, 32) of iterations 1..k →
    (reconstructions (k, B, H, W, 3), decoder carry after iteration k; pass it back with the
    next iterations' bits to continue)."""
    k, B, h, w, _ = bits.shape
    if dec_carry is None:
        dec_carry = initial_carry(model, B, h * DOWNSAMPLING, w * DOWNSAMPLING)[1]

    def step(dec, b):
        x_hat, dec = decode_iteration(model, variables, b, dec)
        return dec, x_hat

    dec_carry, x_hats = jax.lax.scan(step, dec_carry, bits.astype(jnp.float32))
    return x_hats, dec_carry


def l1_loss(out) -> jax.Array:
    """Σ_t mean|r_t| / iterations (paper β·Σ_t |r_t|; port train.py) from :func:`unroll`'s dict."""
    return jnp.sum(out["l1"]) / out["l1"].shape[0]
