#!/usr/bin/env python
"""Two of issue 19's levers, each measured in isolation on XLA:CPU (``docs/SPEED.md``, lever table):

* **layout**: the 5×5 stride-2 convolution of the analysis transform in NHWC/HWIO (lic_jax's
  layout) against NCHW/OIHW (PyTorch's, which XLA:CPU might prefer), forward and forward + both
  gradients (``jax.vjp``), the same kernel and input transposed;
* **GDN next to its convolution**: the convolution alone, GDN alone (its channel product as an
  ``einsum``, lic_jax's form, or as a 1×1 convolution) and both in one jitted program, where XLA
  fuses what it can; how much of a layer's time GDN takes bounds what a fused kernel could save.

Shapes: the middle analysis layer of bmshj2018-hyperprior q3 (N = 128) on kodim01 (1 × 256 × 384
× 128 → 128 × 192 × 128, the encoder) and on a training batch (8 × 128 × 128 × 128 → 64 × 64 ×
128, forward + gradients). Forms interleaved round by round, with the other processes' CPU share
(``benchmarks/quiet.py``).

    .venv/bin/python benchmarks/layout_gdn.py --runs 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quiet import cpu_info, interleaved, timing_summary  # noqa: E402

SHAPES = {"encode 1x256x384x128": ((1, 256, 384, 128), False), "train 8x128x128x128": ((8, 128, 128, 128), True)}


def programs(grad: bool):
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(x, k, dn):
        return lax.conv_general_dilated(x, k, (2, 2), ((2, 2), (2, 2)), dimension_numbers=dn)

    def gdn_einsum(y, gamma, beta):  # lic_jax.layers.gdn.GDN, channels last
        return y * lax.rsqrt(jnp.einsum("...j,ij->...i", y * y, gamma) + beta)

    def gdn_1x1(y, gamma, beta):  # the channel product as a 1×1 convolution (CompressAI's form)
        n = lax.conv_general_dilated(y * y, gamma.T[None, None], (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y * lax.rsqrt(n + beta)

    nhwc, nchw = ("NHWC", "HWIO", "NHWC"), ("NCHW", "OIHW", "NCHW")
    f = {
        "conv NHWC": lambda x, k, g, b: conv(x, k, nhwc),
        "conv NCHW": lambda x, k, g, b: conv(x, k, nchw),
        "GDN einsum": lambda y, k, g, b: gdn_einsum(y, g, b),
        "GDN 1x1 conv": lambda y, k, g, b: gdn_1x1(y, g, b),
        "conv+GDN NHWC": lambda x, k, g, b: gdn_einsum(conv(x, k, nhwc), g, b),
    }
    if not grad:
        return {n: jax.jit(p) for n, p in f.items()}

    def with_grad(p):
        def run(x, k, g, b):
            out, vjp = jax.vjp(p, x, k, g, b)
            return vjp(jnp.ones_like(out))
        return jax.jit(run)

    return {n: with_grad(p) for n, p in f.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import jax
    import jax.numpy as jnp

    rs = np.random.RandomState(0)
    res = {"cpu": cpu_info(), "jax": jax.__version__, "runs": a.runs, "shapes": {}}
    for label, ((n, h, w, c), grad) in SHAPES.items():
        x = rs.randn(n, h, w, c).astype(np.float32)
        k = (rs.randn(5, 5, c, c) * 0.02).astype(np.float32)
        g = np.abs(rs.randn(c, c) * 0.01).astype(np.float32) + 0.1 * np.eye(c, dtype=np.float32)
        b = np.ones(c, np.float32)
        y = np.asarray(jax.jit(lambda x, k: jax.lax.conv_general_dilated(
            x, k, (2, 2), ((2, 2), (2, 2)), dimension_numbers=("NHWC", "HWIO", "NHWC")))(x, k))
        args = {  # each program's inputs in its own layout
            "conv NHWC": (x, k), "conv NCHW": (x.transpose(0, 3, 1, 2), k.transpose(3, 2, 0, 1)),
            "GDN einsum": (y, k), "GDN 1x1 conv": (y, k), "conv+GDN NHWC": (x, k)}
        args = {p: tuple(jnp.asarray(v) for v in xs) + (jnp.asarray(g), jnp.asarray(b)) for p, xs in args.items()}
        fns = programs(grad)
        outs = {p: jax.block_until_ready(f(*args[p])) for p, f in fns.items()}  # compile + warm up
        o0, o1 = (np.asarray(outs[p][0] if grad else outs[p]) for p in ("conv NHWC", "conv NCHW"))
        d_layout = float(np.abs(o0 - o1.transpose(0, 2, 3, 1)).max())  # the output, or the gradient of x
        ts, other = interleaved({p: lambda f=f, xs=args[p]: jax.block_until_ready(f(*xs)) for p, f in fns.items()},
                                a.runs)
        r = timing_summary(ts)
        r.update(forward_and_gradients=grad, max_abs_diff_nchw_vs_nhwc=d_layout, others_cpu_frac_max=other)
        res["shapes"][label] = r
        print(label, "(fwd+grad)" if grad else "(fwd)", flush=True)
        for p, t in ts.items():
            print(f"  {p:14s} median {1e3 * np.median(t):8.1f} ms  min {1e3 * min(t):8.1f} ms", flush=True)
        print(f"  max|NCHW - NHWC| {d_layout:.1e}; other processes <= {100 * (other or 0):.0f} % CPU",
              flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
