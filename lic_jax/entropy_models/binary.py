"""A learned binary context model for the codes of a progressive recurrent codec (Toderici et al.
2017, "Full Resolution Image Compression with Recurrent Neural Networks", CVPR 2017, section
"Entropy Coding"; SYSTEMS.md §7 "BinaryRNN"; TFC's ``research/compression/entropy_coder/
progressive``). Ours is the "equivalent simpler masked model" the issue allows [I]: no recurrent
state over iterations, only the previous iteration's bits, and a row-causal rather than a fully
raster-causal spatial context, so that a whole row of positions is coded with one network call.

The codes of iteration t are a grid b_t ∈ {−1, +1}^(h × w × 32) (one position per 16×16 block,
32 bit channels). **Coding order** within an iteration: rows i = 0 … h−1; within a row, channel
c = 0 … 31; within a channel, columns j = 0 … w−1. The probability of bit (t, i, j, c) depends on

* ``above``: the bits of iteration t in the two rows above (i−2, i−1), columns j−2 … j+2, all 32
  channels (a 2×5×32 window; zero outside the grid);
* ``prev``: the bits of iteration t−1 in the 3×3 window around (i, j), all channels (zero for
  t = 1 and outside the grid);
* ``same``: the bits of channels 0 … c−1 at position (i, j) itself (channel-causal mask);
* the iteration index (a learned embedding; iterations ≥ 16 share the last one).

Every one of these is coded before bit (t, i, j, c) in the order above, so the model is causal;
positions of the same row do not see each other, which is what lets the decoder evaluate the
network once per (row, channel) — h × 32 calls per iteration, each on w positions — instead of
once per bit. 0 in the inputs means "unknown / outside" (bits are ±1).

Network: h₁ = relu(A·above + P·prev + E[t] + a), z_c = relu(W·h₁ + S·(same ⊙ [c′ < c]) + s),
logit_c = u_c·z_c + v_c. Code length = binary cross-entropy.

**Exactness.** The entropy coder needs the same probability on both sides. Per row, the coder
evaluates :func:`row_hidden` (one jitted call: everything that does not depend on the row's own
bits), then runs the channel recursion of :class:`RowState` in numpy float32 (the S·same term
added one channel at a time, then relu, u_c, sigmoid) — the same code on the same inputs on both
sides (the encoder feeds exactly the bits the decoder will have) — and quantises p(b = +1) to an
integer frequency k ∈ [1, 2¹⁶ − 1] (probability k / 2¹⁶, a dyadic float64 the range coder
quantises the same way on both sides). Training uses :func:`logits_grid` (all bits at once,
teacher forcing); it computes
the same function but is never used for coding. Probabilities are float32 network outputs, so
files are exact on the platform that wrote them (like the other float entropy paths; FORMAT.md §7).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["BinaryContextModel", "ABOVE_ROWS", "ABOVE_HALF", "PREV_HALF", "MAX_T", "FREQ_BITS", "patches_grid",
           "logits_grid", "bce_bits", "row_frequencies", "row_hidden", "RowState", "init_params", "fit", "collect_bits",
           "ideal_bits",
           "params_to_arrays", "params_from_arrays", "params_fingerprint"]

ABOVE_ROWS = 2  # rows above (current iteration)
ABOVE_HALF = 2  # columns j−2 … j+2
PREV_HALF = 1  # 3×3 window of the previous iteration
MAX_T = 16  # iteration embeddings (t ≥ 16 uses the last)
FREQ_BITS = 16  # p(+1) = k / 2**16, k ∈ [1, 2**16 − 1]


class BinaryContextModel(nn.Module):
    """Logits of p(b = +1) (module docstring). ``__call__(above, prev, same, t)`` with flattened
    windows ``above`` (N, 2·5·C), ``prev`` (N, 3·3·C), ``same`` (N, C), ``t`` (N,) int
    (0-based iteration) → (N, C) logits, channel c seeing only ``same[:, :c]``;
    ``channel(…, c)`` → (N,) the logits of one channel (what the coder evaluates)."""

    bits: int = 32
    hidden: int = 64
    dtype: Any = jnp.float32

    def setup(self):
        C, H = self.bits, self.hidden
        self.a = nn.Dense(H, name="above")
        self.p = nn.Dense(H, use_bias=False, name="prev")
        self.e = nn.Embed(MAX_T, H, name="iteration")
        self.w = nn.Dense(H, name="mix")
        self.s = nn.Dense(H, use_bias=False, name="same")
        self.u = self.param("u", nn.initializers.lecun_normal(), (C, H))
        self.v = self.param("v", nn.initializers.zeros, (C,))

    def _h1(self, above, prev, t):
        return nn.relu(self.a(above) + self.p(prev) + self.e(jnp.minimum(t, MAX_T - 1)))

    def __call__(self, above, prev, same, t):
        C = self.bits
        h1 = self.w(self._h1(above, prev, t))  # (N, H)
        mask = jnp.tril(jnp.ones((C, C), same.dtype), -1)  # [c, c′] = c′ < c
        z = nn.relu(h1[:, None, :] + self.s(same[:, None, :] * mask[None]))  # (N, C, H)
        return jnp.sum(z * self.u[None], axis=-1) + self.v

    def channel(self, above, prev, same, t, c):
        C = self.bits
        h1 = self.w(self._h1(above, prev, t))
        m = (jnp.arange(C) < c).astype(same.dtype)
        z = nn.relu(h1 + self.s(same * m))
        return z @ self.u[c] + self.v[c]


# ------------------------------------------------------------------------------------------------
# context windows
# ------------------------------------------------------------------------------------------------
def _windows(x, rows: int, cols: int, out_rows: int, out_cols: int):
    """x (..., R, Cw, C) padded → (..., out_rows, out_cols, rows·cols·C) with window offset (di, dj)
    taken from x[..., i + di, j + dj, :] (order di, dj, channel)."""
    parts = [x[..., di:di + out_rows, dj:dj + out_cols, :] for di in range(rows) for dj in range(cols)]
    return jnp.concatenate(parts, axis=-1)


def pad_above(cur):
    """(…, h, w, C) → zero-padded by ABOVE_ROWS rows on top and ABOVE_HALF columns each side."""
    pad = [(0, 0)] * (cur.ndim - 3) + [(ABOVE_ROWS, 0), (ABOVE_HALF, ABOVE_HALF), (0, 0)]
    return jnp.pad(cur, pad)


def pad_prev(prev):
    pad = [(0, 0)] * (prev.ndim - 3) + [(PREV_HALF, PREV_HALF), (PREV_HALF, PREV_HALF), (0, 0)]
    return jnp.pad(prev, pad)


def patches_grid(cur, prev):
    """All context windows of one iteration: cur, prev (…, h, w, C) → above (…, h, w, 2·5·C), prev
    (…, h, w, 9·C). Row i's ``above`` window holds rows i−2, i−1 only (never row i)."""
    h, w = cur.shape[-3:-1]
    above = _windows(pad_above(cur), ABOVE_ROWS, 2 * ABOVE_HALF + 1, h, w)
    pw = _windows(pad_prev(prev), 2 * PREV_HALF + 1, 2 * PREV_HALF + 1, h, w)
    return above, pw


def _with_prev(bits):
    """bits (T, …) → the previous iteration's bits (zeros for t = 1)."""
    return jnp.concatenate([jnp.zeros_like(bits[:1]), bits[:-1]], axis=0)


def logits_grid(model: BinaryContextModel, params, bits):
    """Teacher-forced logits of every bit: bits (T, B, h, w, C) ±1 → (T, B, h, w, C) (training and
    estimates; the coder uses :func:`row_frequencies`)."""
    bits = jnp.asarray(bits, jnp.float32)
    T, B, h, w, C = bits.shape
    above, prev = patches_grid(bits, _with_prev(bits))
    t = jnp.broadcast_to(jnp.arange(T)[:, None, None, None], (T, B, h, w))
    out = model.apply(params, above.reshape(-1, above.shape[-1]), prev.reshape(-1, prev.shape[-1]),
                      bits.reshape(-1, C), t.reshape(-1))
    return out.reshape(T, B, h, w, C)


def bce_bits(logits, bits):
    """Σ −log2 p(b) in bits, elementwise (b ∈ {−1, +1}; p(+1) = sigmoid(logit))."""
    return jax.nn.softplus(-jnp.asarray(bits, jnp.float32) * logits) / jnp.log(2.0)


@functools.partial(jax.jit, static_argnums=0)
def _row_hidden(model, params, above_rows, prev_rows, t):
    w = above_rows.shape[1] - 2 * ABOVE_HALF
    above = _windows(above_rows, ABOVE_ROWS, 2 * ABOVE_HALF + 1, 1, w)[0]
    prev = _windows(prev_rows, 2 * PREV_HALF + 1, 2 * PREV_HALF + 1, 1, w)[0]
    tt = jnp.full((w,), t, jnp.int32)
    return model.apply(params, above, prev, tt, method=lambda m, a, p, t: m.w(m._h1(a, p, t)))


def row_hidden(model: BinaryContextModel, params, above_rows, prev_rows, t: int) -> np.ndarray:
    """The part of one row's logits that does not depend on the row's own bits: W·h₁ (w, H)
    float32. ``above_rows``: rows i … i+1 of :func:`pad_above` (the two rows above row i,
    padded; (2, w+4, C)); ``prev_rows``: rows i … i+2 of :func:`pad_prev` of the previous
    iteration ((3, w+2, C)); ``t``: 0-based iteration. One jitted call per row."""
    return np.asarray(_row_hidden(model, params, jnp.asarray(above_rows, jnp.float32),
                                  jnp.asarray(prev_rows, jnp.float32), jnp.int32(t)), np.float32)


class RowState:
    """The channel recursion of one row in numpy float32 (what the coder runs, identically on
    both sides): ``acc`` = S·(same ⊙ [c′ < c]) is built up one channel at a time, so channel c
    costs O(w·H) instead of a network call. ``frequencies(c)`` → k (w,) int32 of p(+1) = k/2¹⁶;
    ``add(c, bits)`` records the row's channel-c bits (±1)."""

    def __init__(self, params, hidden: np.ndarray):
        p = params["params"]
        self.S = np.asarray(p["same"]["kernel"], np.float32)  # (C, H)
        self.u = np.asarray(p["u"], np.float32)  # (C, H)
        self.v = np.asarray(p["v"], np.float32)  # (C,)
        self.hidden = np.asarray(hidden, np.float32)
        self.acc = np.zeros_like(self.hidden)

    def frequencies(self, c: int) -> np.ndarray:
        z = np.maximum(self.hidden + self.acc, np.float32(0.0))
        logit = np.sum(z * self.u[c][None, :], axis=1, dtype=np.float32) + self.v[c]
        p = np.float32(1.0) / (np.float32(1.0) + np.exp(-logit, dtype=np.float32))
        k = np.rint(p * np.float32(1 << FREQ_BITS))
        return np.clip(k, 1, (1 << FREQ_BITS) - 1).astype(np.int32)

    def add(self, c: int, bits: np.ndarray):
        self.acc = self.acc + np.asarray(bits, np.float32)[:, None] * self.S[c][None, :]


def row_frequencies(model: BinaryContextModel, params, above_rows, prev_rows, same, t: int, c: int) -> np.ndarray:
    """Integer frequencies k (w,) of channel ``c`` of one row given ``same`` (w, C), the row's bits
    of channels < c (others ignored): :func:`row_hidden` + :class:`RowState` replayed — the exact
    numbers the coder uses (tests; the coder keeps one RowState per row instead)."""
    st = RowState(params, row_hidden(model, params, above_rows, prev_rows, t))
    for cc in range(c):
        st.add(cc, np.asarray(same, np.float32)[:, cc])
    return st.frequencies(c)


def ideal_bits(freq: np.ndarray, ones: np.ndarray) -> float:
    """Σ −log2 of the quantised probabilities of the coded bits (``ones``: bit = +1)."""
    p1 = np.asarray(freq, np.float64) / float(1 << FREQ_BITS)
    return float(-np.sum(np.log2(np.where(ones, p1, 1.0 - p1))))


# ------------------------------------------------------------------------------------------------
# parameters, training
# ------------------------------------------------------------------------------------------------
def init_params(key, bits: int = 32, hidden: int = 64):
    """(model, params) — an untrained context model (valid for coding, ~1 bit per bit)."""
    model = BinaryContextModel(bits, hidden)
    C = bits
    a = jnp.zeros((1, ABOVE_ROWS * (2 * ABOVE_HALF + 1) * C))
    p = jnp.zeros((1, (2 * PREV_HALF + 1) ** 2 * C))
    return model, model.init(key, a, p, jnp.zeros((1, C)), jnp.zeros((1,), jnp.int32))


def params_to_arrays(params) -> dict[str, np.ndarray]:
    """Flat {'a/b/c': array} (for ``bitcoder.npz``)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v, np.float32) for path, v in flat}


def params_from_arrays(arrays) -> dict:
    out: dict = {}
    for name, v in arrays.items():
        d = out
        *head, last = name.split("/")
        for k in head:
            d = d.setdefault(k, {})
        d[last] = jnp.asarray(np.asarray(v, np.float32))
    return out


def params_fingerprint(params) -> str:
    """SHA-256 (hex) of the parameters (sorted names, float32 little-endian bytes)."""
    import hashlib

    h = hashlib.sha256()
    for name, v in sorted(params_to_arrays(params).items()):
        h.update(name.encode() + b"\0" + str(v.shape).encode() + b"\0" + v.astype("<f4").tobytes())
    return h.hexdigest()


def collect_bits(model, variables, images, iterations: int, key, crop: int = 64, count: int = 16):
    """Eval-mode codes of ``count`` random ``crop``×``crop`` crops of ``images`` (list of float32
    (H, W, 3) in [0, 1], sides ≥ crop): (T, count, crop/16, crop/16, 32) float32 ±1."""
    from ..models import toderici2017 as T

    ks = jax.random.split(key, count)
    crops = []
    for k in ks:
        ki, ky, kx = jax.random.split(k, 3)
        img = images[int(jax.random.randint(ki, (), 0, len(images)))]
        H, W = img.shape[:2]
        y = int(jax.random.randint(ky, (), 0, H - crop + 1))
        x = int(jax.random.randint(kx, (), 0, W - crop + 1))
        crops.append(np.asarray(img[y:y + crop, x:x + crop], np.float32))
    x = jnp.asarray(np.stack(crops))
    out = jax.jit(lambda v, x: T.unroll(model, v, x, iterations))(variables, x)
    return np.asarray(out["bits"])


def fit(bits, key, steps: int = 300, lr: float = 3e-3, hidden: int = 64, batch: int | None = None, log_every: int = 0):
    """Fit a :class:`BinaryContextModel` to ``bits`` (T, N, h, w, 32) by Adam on the mean binary
    cross-entropy; ``batch``: crops per step (default all). Returns (model, params, history of
    bits per bit)."""
    bits = jnp.asarray(bits, jnp.float32)
    k_init, k_batch = jax.random.split(key)
    model, params = init_params(k_init, int(bits.shape[-1]), hidden)
    opt = optax.adam(lr)
    state = opt.init(params)
    N = bits.shape[1]

    def loss_fn(p, b):
        return jnp.mean(bce_bits(logits_grid(model, p, b), b))

    @jax.jit
    def step(p, s, k):
        b = bits if batch is None or batch >= N else bits[:, jax.random.choice(k, N, (batch,), replace=False)]
        loss, g = jax.value_and_grad(loss_fn)(p, b)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    hist = []
    for i, k in enumerate(jax.random.split(k_batch, steps)):
        params, state, loss = step(params, state, k)
        hist.append(float(loss))
        if log_every and (i % log_every == 0 or i == steps - 1):
            print(f"step {i:4d}  {float(loss):.4f} bits/bit", flush=True)
    return model, params, hist
