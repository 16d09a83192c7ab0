#!/usr/bin/env python
"""Where a variable-rate model's high-rate end saturates: the transforms or the quantisation?
(issue 18, ``docs/TRAINING.md``).

For each λ, on Kodak images: PSNR of ``g_s(g_a(x))`` with the latent left unquantised (the
transforms' own ceiling: no rate could buy more) and of ``g_s(round(g_a(x)))`` (plain rounding,
without the coder's mean offsets, so a little below what real files give). When the first number
is flat in λ and close to the second at the top λ, more rate cannot buy PSNR: the transforms need
training, not the entropy model.

    python experiments/transform_ceiling.py ~/lic_runs/bundled-vr/artifact-export --images 1,7,15,23
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="a variable-rate (mae-*) model directory")
    p.add_argument("--images", default="1,7,15,23", help="Kodak image numbers")
    p.add_argument("--lmbda", default="0.0018,0.0035,0.0067,0.013,0.025,0.0483")
    p.add_argument("--kodak", default=os.path.join(os.environ.get("LIC_JAX_SHARED", "../shared"), "data", "kodak"))
    p.add_argument("--json")
    a = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    from PIL import Image

    from lic_jax.artifact import load_artifact

    art = load_artifact(a.artifact)
    model, v = art.model, art.variables
    analysis = jax.jit(lambda x, lam: model.apply(v, x, lam, method="analysis"))
    synthesis = jax.jit(lambda y, lam: model.apply(v, y, lam, method="synthesis"))
    images = []
    for i in a.images.split(","):
        with Image.open(os.path.join(a.kodak, f"kodim{int(i):02d}.png")) as im:
            images.append(np.asarray(im.convert("RGB"), np.float32)[None] / 255)

    def psnr(x, y):
        y = np.round(np.clip(np.asarray(y), 0, 1) * 255) / 255  # an 8-bit image, as files decode
        return float(10 * np.log10(1 / np.mean((y - x) ** 2)))

    rows = []
    for lam in (float(s) for s in a.lmbda.split(",")):
        lv = jnp.full((1,), lam, jnp.float32)
        unq, rnd = [], []
        for x in images:
            y = analysis(x, lv)
            unq.append(psnr(x, synthesis(y, lv)))
            rnd.append(psnr(x, synthesis(jnp.round(y), lv)))
        rows.append({"lmbda": lam, "psnr_unquantised": float(np.mean(unq)), "psnr_rounded": float(np.mean(rnd))})
        print(f"λ {lam:<7g} g_s(g_a(x)) {np.mean(unq):6.2f} dB   g_s(round(g_a(x))) {np.mean(rnd):6.2f} dB", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"artifact": os.path.abspath(a.artifact), "images": a.images, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
