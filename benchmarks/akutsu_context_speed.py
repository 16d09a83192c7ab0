#!/usr/bin/env python
"""Decode time of akutsu2020's context coding: global causal attention (position by position) against
a local attention window (wavefronts), on one Kodak image (issue 20, item 4; docs/AKUTSU.md).

The same random-init weights serve every variant (``attention_window`` changes the attention mask,
not the parameters), at the CPU run's size (``configs/akutsu2020.py:cpu``: width 0.25, one RCAB per
group) unless ``--width`` / ``--blocks`` say otherwise. Per variant: one warm-up encode + decode
(compilation), then ``--runs`` timed decodes; reported: the median decode time, the coding steps,
the time of the y-coding loop alone, and the file size. Every decode is checked against the
encoder's symbols.

    python benchmarks/akutsu_context_speed.py --json benchmarks/results/akutsu/context_speed_<machine>_<date>.json
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = os.environ.get("LIC_JAX_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--image", default=os.path.join(shared, "data", "kodak", "kodim01.png"))
    ap.add_argument("--windows", default="0,1,2,3", help="attention_window values (0 = global)")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--blocks", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", default="")
    a = ap.parse_args()

    import jax
    import jax.numpy as jnp
    from PIL import Image

    from lic_jax.coding import Codec
    from lic_jax.models import get_model
    from quiet import Contention, cpu_info

    jax.config.update("jax_threefry_partitionable", True)
    img = np.asarray(Image.open(a.image).convert("RGB"))
    variables = None
    rows = []
    for r in (int(w) for w in a.windows.split(",")):
        model, spec = get_model("akutsu2020", width=a.width, blocks=a.blocks, attention_window=r)
        if variables is None:
            variables = {"params": model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))["params"]}
        codec = Codec(model, spec, variables)
        enc = codec.encode(img)
        codec.decode(enc.data)  # compile
        coder = codec.latent_coder
        loop = coder._wavefronts if r else coder._positions
        spent = []

        def timed_loop(*args, _loop=loop):
            t = time.perf_counter()
            out = _loop(*args)
            spent.append(time.perf_counter() - t)
            return out

        if r:
            coder._wavefronts = timed_loop
        else:
            coder._positions = timed_loop
        ts, others = [], []
        for _ in range(a.runs):
            meter = Contention().start()
            t = time.perf_counter()
            _, lat, _ = codec.decode(enc.data)
            ts.append(time.perf_counter() - t)
            others.append(meter.stop())
            if not np.array_equal(lat.y_symbols, enc.latents.y_symbols):
                raise SystemExit(f"window {r}: decoded symbols differ from the encoder's")
        H, W, _ = enc.latents.y_symbols.shape
        steps = (model.wavefront_slope() * (H - 1) + W) if r else H * W
        row = {"attention_window": r, "decode_s": statistics.median(ts), "y_loop_s": statistics.median(spent),
               "steps": steps, "bytes": len(enc.data), "bpp": 8 * len(enc.data) / (img.shape[0] * img.shape[1]),
               "others_cpu_max": max((o or 0) for o in others)}
        rows.append(row)
        print(f"window {r if r else 'global'}: decode {row['decode_s']:.3f} s (y loop {row['y_loop_s']:.3f} s, "
              f"{steps} steps, {1e3 * row['y_loop_s'] / steps:.2f} ms/step), {row['bytes']} B; "
              f"others ≤ {100 * row['others_cpu_max']:.0f}% CPU", flush=True)
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"image": os.path.basename(a.image), "shape": list(img.shape), "width": a.width,
                       "blocks": a.blocks, "jax": jax.__version__, "cpu": cpu_info(),
                       "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}, f, indent=1)
        print("wrote", a.json)


if __name__ == "__main__":
    main()
