"""Does an akutsu2020 model carry over from its training crops to whole images? (issue 20;
docs/AKUTSU.md, "The CPU run", "Why the run restarted")

    python experiments/akutsu_size_check.py --model MODEL [--dataset kodak] [--images kodim01 kodim05] \
        [--tile 256] [--out RESULT.json]

For each image: the real file's bpp of the whole image against the mean over its ``--tile``² tiles
(each tile coded as an image of its own, the size the model was validated at), and the mean
magnitude of the latent y, of the entropy model's μ and of the hyper-decoder H_d's output on the
whole image and on its tiles. A model that generalises gives a whole-image rate near the tiles'
(a little lower: fewer borders) and the same magnitudes; the quarter-width IGDN model at step 1000
gave 0.95 against 0.20 bpp on kodim01 and an H_d output 27× the tiles'. Also G_m's PSNR and RGB means
(the GDN model without the mean shift at step 500: a blue mean of −0.18) and how much colour G_m keeps
(``chroma_ratio``: mean per-pixel std over R, G, B against the image's; 0.49 on kodim15 at step 2000).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def magnitudes(model, variables, img_u8):
    """Mean |y|, |μ| and |H_d(ẑ)| for one image (eval mode: ẑ = round(z), context on round(y))."""
    import jax.numpy as jnp

    from lic_jax.models.base import crop_image, pad_image

    x0 = jnp.asarray(img_u8, jnp.float32)[None] / 255.0
    x = pad_image(x0, model.downsampling)  # as the model pads
    y = model.apply(variables, x, method=model.analysis)
    z = model.apply(variables, y, method=model.hyper_analysis)
    hyper = model.apply(variables, jnp.round(z), method=model.hyper_synthesis)
    _, mu = model.apply(variables, hyper, jnp.round(y), method=model.gaussian_params)
    x_main = jnp.clip(crop_image(model.apply(variables, jnp.round(y), method=model.synthesis_main), *img_u8.shape[:2]),
                      0, 1)
    return {"y": float(jnp.abs(y).mean()), "mu": float(jnp.abs(mu).mean()), "h_d": float(jnp.abs(hyper).mean()),
            "h_d_max": float(jnp.abs(hyper).max()),
            # G_m's output (clipped to [0, 1]; not through the file) against the image: RGB means and PSNR
            "rgb_mean": [float(v) for v in x0.mean((0, 1, 2))],
            "rgb_mean_main": [float(v) for v in x_main.mean((0, 1, 2))],
            "psnr_main": float(-10 * jnp.log10(jnp.mean((x_main - x0) ** 2))),
            # colour: the mean over pixels of the std over R, G, B, G_m's over the image's (1 = as colourful)
            "chroma_ratio": float(jnp.mean(jnp.std(x_main, axis=-1)) / jnp.mean(jnp.std(x0, axis=-1)))}


def check(codec, model, variables, img, tile: int) -> dict:
    h, w = img.shape[:2]
    full = codec.encode(img)
    row = {"height": h, "width": w, "bpp_whole": 8 * len(full.data) / (h * w), "whole": magnitudes(model, variables, img)}
    bits, n, mags = 0, 0, []
    for i in range(0, h - tile + 1, tile):
        for j in range(0, w - tile + 1, tile):
            t = img[i:i + tile, j:j + tile]
            bits += 8 * len(codec.encode(t).data)
            n += tile * tile
            mags.append(magnitudes(model, variables, t))
    row["tiles"] = len(mags)
    row["bpp_tiles"] = bits / n if n else None
    row["tile_mean"] = {k: np.mean([m[k] for m in mags], axis=0).tolist() for k in mags[0]} if mags else None
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an akutsu2020 model directory")
    ap.add_argument("--dataset", default="kodak", help="kodak, clic[:split] or a directory (eval.py's data sets)")
    ap.add_argument("--images", nargs="+", default=["kodim01", "kodim05"], help="image names without suffix")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from lic_jax.artifact import load_artifact
    from lic_jax.coding import Codec
    from lic_jax.evaluation.datasets import DatasetNotFound, resolve_dataset

    try:
        ds = resolve_dataset(a.dataset)
    except DatasetNotFound as e:
        raise SystemExit(f"akutsu_size_check.py: error: {e}") from None
    loaders = {os.path.splitext(n)[0]: load for n, load in zip(ds.names, ds.loaders)}
    missing = [n for n in a.images if n not in loaders]
    if missing:
        raise SystemExit(f"akutsu_size_check.py: error: not in {a.dataset}: {', '.join(missing)}")
    art = load_artifact(a.model)
    if art.spec.name != "akutsu2020":
        raise SystemExit(f"akutsu_size_check.py: error: {a.model} is a {art.spec.name} model, not akutsu2020")
    model, variables = art.model, art.variables
    codec = Codec.from_artifact(art)
    res = {"model": os.path.abspath(a.model), "hparams": dict(art.spec.hparams), "tile": a.tile, "images": {}}
    for name in a.images:
        img = loaders[name]()
        r = check(codec, model, variables, img, a.tile)
        res["images"][name] = r
        print(f"{name}: bpp whole {r['bpp_whole']:.4f}, {a.tile}² tiles {r['bpp_tiles']:.4f} ({r['tiles']}); "
              f"mean |y| {r['whole']['y']:.3g} vs {r['tile_mean']['y']:.3g}, |mu| {r['whole']['mu']:.3g} vs "
              f"{r['tile_mean']['mu']:.3g}, |H_d| {r['whole']['h_d']:.3g} vs {r['tile_mean']['h_d']:.3g}; PSNR main "
              f"{r['whole']['psnr_main']:.2f} dB, RGB mean {np.round(r['whole']['rgb_mean_main'], 3)} "
              f"(image {np.round(r['whole']['rgb_mean'], 3)}), chroma ratio {r['whole']['chroma_ratio']:.3f}", flush=True)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
