#!/usr/bin/env python
"""Forms of the 5×5 stride-2 transposed convolution (CompressAI ``deconv``) on XLA:CPU, per layer.

The synthesis transforms spend nearly all their time in these layers (issue 19). This measures,
for each layer shape of the bmshj2018-hyperprior q3 (N=128) and mbt2018 q3 (N=M=192) synthesis on
a 768×512 image, the steady-state time of every form, interleaved round by round, with the
share of the CPU other processes used (``benchmarks/quiet.py``) and the max |difference| to the
direct form:

* ``transpose``: ``lax.conv_general_dilated`` with ``lhs_dilation`` (the form on GPU/TPU);
* ``subpixel``: one stride-1 3×3 convolution to s²·out channels + depth-to-space (the CPU
  default, ``lic_jax.layers.conv``): 36 taps per output quad instead of 25 (1.44× the MACs);
* ``im2col``: the sub-pixel kernel as one matrix product over explicit 3×3 patches;
* ``phases``: the four output phases as four stride-1 convolutions with their exact taps
  (3×3, 3×2, 2×3, 2×2: 1.0× the MACs) + interleave;
* ``rows``: two convolutions, one per output-row phase (3×3 and 2×3 taps, 1.2× the MACs).
* ``wino23`` / ``wino43``: the sub-pixel 3×3 convolution by Winograd's minimal filtering
  (Lavin & Gray 2016) F(2×2, 3×3) / F(4×4, 3×3): input and output tile transforms around 16 / 36
  matrix products, 2.25× / 4× fewer multiplies than the sub-pixel convolution.

    .venv/bin/python benchmarks/conv_forms.py --json benchmarks/results/conv_forms.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quiet import THRESHOLD, Contention, cpu_info  # noqa: E402

# (input H, W, in, out) of the four synthesis layers of each model on a 768×512 image
LAYERS = {"bmshj2018-hyperprior q3": [(32, 48, 192, 128), (64, 96, 128, 128), (128, 192, 128, 128), (256, 384, 128, 3)],
          "mbt2018 q3": [(32, 48, 192, 192), (64, 96, 192, 192), (128, 192, 192, 192), (256, 384, 192, 3)]}
DN = ("NHWC", "HWIO", "NHWC")


def forms():
    import jax.numpy as jnp
    from jax import lax

    from lic_jax.layers.conv import _lin as lin, _subpixel_kernel, conv_transpose2d

    def phase_taps(k, s, p, lo, hi):
        js = np.arange(-lo, hi + 1)
        return [[i for i, j in enumerate(js) if 0 <= r + p - s * j < k] for r in range(s)]

    def im2col(x, kernel, s=2, p=2):
        w, (lo, hi) = _subpixel_kernel(kernel, s, p)
        J, (n, h, wd, c) = w.shape[0], x.shape
        xp = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
        cols = jnp.concatenate([xp[:, i:i + h, j:j + wd, :] for i in range(J) for j in range(J)], -1)
        y = jnp.dot(cols.reshape(-1, J * J * c), w.reshape(J * J * c, -1)).reshape(n, h, wd, s, s, -1)
        return jnp.transpose(y, (0, 1, 3, 2, 4, 5)).reshape(n, h * s, wd * s, -1)

    def phases(x, kernel, s=2, p=2):
        w, (lo, hi) = _subpixel_kernel(kernel, s, p)
        J, cin, cout = w.shape[0], kernel.shape[2], kernel.shape[3]
        w = w.reshape(J, J, cin, s, s, cout)
        n, h, wd, _ = x.shape
        xp = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
        taps = phase_taps(kernel.shape[0], s, p, lo, hi)
        rows = []
        for rh in range(s):
            th = taps[rh]
            cols = []
            for rw in range(s):
                tw = taps[rw]
                sub = w[th[0]:th[-1] + 1, tw[0]:tw[-1] + 1, :, rh, rw, :]
                xs = xp[:, th[0]:th[0] + h + len(th) - 1, tw[0]:tw[0] + wd + len(tw) - 1, :]
                cols.append(lax.conv_general_dilated(xs, sub, (1, 1), "VALID", dimension_numbers=DN))
            rows.append(jnp.stack(cols, 3))
        return jnp.stack(rows, 2).reshape(n, h * s, wd * s, cout)

    def rows(x, kernel, s=2, p=2):
        w, (lo, hi) = _subpixel_kernel(kernel, s, p)
        J, cin, cout = w.shape[0], kernel.shape[2], kernel.shape[3]
        w = w.reshape(J, J, cin, s, s * cout)
        n, h, wd, _ = x.shape
        xp = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
        out = []
        for rh, th in enumerate(phase_taps(kernel.shape[0], s, p, lo, hi)):
            xs = xp[:, th[0]:th[0] + h + len(th) - 1]
            out.append(lax.conv_general_dilated(xs, w[th[0]:th[-1] + 1, :, :, rh], (1, 1), "VALID", dimension_numbers=DN))
        return jnp.stack(out, 2).reshape(n, h * s, wd * s, cout)

    # Winograd F(4×4, 3×3) (F(2×2, 3×3) is lic_jax's impl='winograd'): (m, Bᵀ, G, Aᵀ) with y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A per tile (Lavin & Gray 2016)
    F43 = (4, [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
           [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
           [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])

    def winograd(F):
        m, BT, G, AT = F[0], *(np.asarray(a, np.float64) for a in F[1:])
        t = m + 2

        def conv(x, kernel, s=2, p=2):
            w, (lo, hi) = _subpixel_kernel(kernel, s, p)
            (n, h, wd, c), o = x.shape, w.shape[-1]
            th, tw = -(-h // m), -(-wd // m)
            xp = jnp.pad(x, ((0, 0), (lo, hi + m * th - h), (lo, hi + m * tw - wd), (0, 0)))
            vh = [lin(BT[a], [xp[:, k:k + m * th:m] for k in range(t)]) for a in range(t)]
            u = jnp.einsum("ai,ijco,bj->abco", G.astype(np.float32), w, G.astype(np.float32))
            prod = [[lin(BT[b], [vh[a][:, :, k:k + m * tw:m] for k in range(t)]).reshape(-1, c) @ u[a, b]
                     for b in range(t)] for a in range(t)]
            out = []
            for r in range(m):
                pr = [lin(AT[r], [prod[a][b] for a in range(t)]) for b in range(t)]
                out += [lin(AT[q], pr) for q in range(m)]
            y = jnp.stack(out, 1).reshape(n, th, tw, m, m, o)
            y = jnp.transpose(y, (0, 1, 3, 2, 4, 5)).reshape(n, m * th, m * tw, o)[:, :h, :wd]
            y = jnp.transpose(y.reshape(n, h, wd, s, s, -1), (0, 1, 3, 2, 4, 5))
            return y.reshape(n, h * s, wd * s, -1)

        return conv

    return {"transpose": lambda x, k: conv_transpose2d(x, k, 2, impl="transpose"),
            "subpixel": lambda x, k: conv_transpose2d(x, k, 2, impl="subpixel"),
            "im2col": im2col, "phases": phases, "rows": rows,
            "wino23": lambda x, k: conv_transpose2d(x, k, 2, impl="winograd"),  # the library's form
            "wino43": winograd(F43)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--models", default=",".join(LAYERS))
    p.add_argument("--forms", help="comma-separated subset of the forms (default: all)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    import jax
    import jax.numpy as jnp

    fs = forms()
    if a.forms:
        fs = {n: fs[n] for n in ["transpose"] + [f for f in a.forms.split(",") if f != "transpose"]}
    rng = np.random.default_rng(0)
    out = {"cpu": cpu_info(), "jax": jax.__version__, "contention_threshold": THRESHOLD, "rounds": a.rounds, "layers": []}
    for model in a.models.split(","):
        for (h, w, ci, co) in LAYERS[model]:
            x = jnp.asarray(rng.standard_normal((1, h, w, ci)), jnp.float32)
            k = jnp.asarray(rng.standard_normal((5, 5, ci, co)) * 0.05, jnp.float32)
            jf = {n: jax.jit(f) for n, f in fs.items()}
            ref = np.asarray(jf["transpose"](x, k))
            err = {n: float(np.max(np.abs(np.asarray(f(x, k)) - ref))) for n, f in jf.items()}
            times, others = {n: [] for n in jf}, []
            for _ in range(a.rounds):
                for n, f in jf.items():
                    c = Contention().start()
                    t = time.perf_counter()
                    f(x, k).block_until_ready()
                    times[n].append(time.perf_counter() - t)
                    others.append(c.stop())
            row = {"model": model, "in": [h, w, ci], "out_channels": co,
                   "gmac": h * w * 25 * ci * co / 1e9,
                   "median_ms": {n: 1e3 * statistics.median(t) for n, t in times.items()},
                   "min_ms": {n: 1e3 * min(t) for n, t in times.items()},
                   "max_abs_diff": err, "others_cpu_frac": max([o for o in others if o is not None], default=None)}
            out["layers"].append(row)
            best = min(row["median_ms"], key=row["median_ms"].get)
            print(f"{model:24s} {h}x{w}x{ci}->{co}: " + "  ".join(f"{n} {v:7.1f}" for n, v in row["median_ms"].items())
                  + f"  ms (best: {best}; others {row['others_cpu_frac'] or 0:.0%} CPU)", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
