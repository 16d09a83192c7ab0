"""Does a trained akutsu2020 model code colour, and how much MS-SSIM would colour be worth?

    python experiments/akutsu_colour_check.py --model MODEL_DIR [--images kodim15,kodim23,…] --out colour.json

Per Kodak image, the model's real file is decoded with G_m, and both the image and the decode go to
BT.601 Y′CbCr (full range, as JPEG). It reports:

* ``cb_corr`` / ``cr_corr``: the correlation of the decode's chroma plane with the image's (1 when the
  colour is coded, ≈ 0 when the decode's colour is a constant tint: the CPU run's decodes, docs/AKUTSU.md);
  ``chroma_std_ratio``: the decode's chroma std over the image's (Cb and Cr pooled);
* MS-SSIM (RGB, the training metric) of the decode, and of three oracles: the decode's luma with the
  image's chroma (``ms_ssim_true_chroma``), with the image's chroma low-passed by a Gaussian of σ = 8 px
  (``ms_ssim_lowpass_chroma``: colour at about 1/16 of the resolution, a few bits), and the image's own
  luma with a flat chroma (``ms_ssim_flat_chroma``: what MS-SSIM gives a perfectly coded grey image);
* pooled over the images, ``latent_r2``: how much of the image's Y′, Cb and Cr averaged over each
  16 × 16 block (one latent position) a least-squares linear map from the latent y explains (R²;
  ``--init SEED``: the same for a fresh initialisation of the model, the reference for what training
  keeps or drops). Low chroma R² says the encoder has dropped the colour, not just the decoder.
  ``encoder_r2``: the same after each of E's bodies (their outputs averaged over each 16 × 16 block), which
  says where in E the colour goes.

The oracles tell whether the loss rewards colour: when the low-passed chroma adds far more MS-SSIM than its
bits would cost at λ_e, a model that does not code colour is stuck in training, not rationally dropping it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

DEFAULT_IMAGES = "kodim15,kodim23,kodim03,kodim04,kodim01,kodim20"


def to_ycc(rgb: np.ndarray) -> np.ndarray:
    """(…, 3) RGB in [0, 1] → (…, 3) Y′ in [0, 1], Cb and Cr in [−½, ½] (BT.601 full range, float64)."""
    from lic_jax.utils.colour import rgb_to_ycbcr

    return rgb_to_ycbcr(rgb, offset=0.0)


def to_rgb(ycc: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_ycc`, clipped to [0, 1]."""
    from lic_jax.utils.colour import ycbcr_to_rgb

    return np.clip(ycbcr_to_rgb(ycc, offset=0.0), 0.0, 1.0)


AXES = np.array([[1.0, -1.0], [1.0, 1.0]]) / np.sqrt(2.0)  # chroma axes in (Cb, Cr): blue–orange, green–magenta


def chroma_stats(img: np.ndarray, dec: np.ndarray) -> dict:
    """Correlation, std ratio, mean offset and affine map of the decode's chroma planes against the image's (RGB in [0, 1])."""
    a, b = to_ycc(img), to_ycc(dec)

    def corr(u, v):
        u, v = u.ravel() - u.mean(), v.ravel() - v.mean()
        d = np.sqrt((u * u).sum() * (v * v).sum())
        return float((u * v).sum() / d) if d > 0 else 0.0

    # the least-squares affine map of the image's chroma to the decode's, (Cb′, Cr′) = A (Cb, Cr) + c: A's
    # diagonal below 1 is desaturation, its off-diagonal terms a turn of the hue
    u, v = (c[..., 1:].reshape(-1, 2) for c in (a, b))
    u, v = u - u.mean(0), v - v.mean(0)
    amap = np.linalg.lstsq(u, v, rcond=None)[0].T if np.abs(u).max() > 0 else np.zeros((2, 2))
    return {"cb_corr": corr(a[..., 1], b[..., 1]), "cr_corr": corr(a[..., 2], b[..., 2]),
            "chroma_std_ratio": float(b[..., 1:].std(axis=(0, 1)).mean() / a[..., 1:].std(axis=(0, 1)).mean()),
            # the decode's global colour cast: its mean Cb / Cr minus the image's (chroma in [-0.5, 0.5])
            "bias_cb": float(b[..., 1].mean() - a[..., 1].mean()), "bias_cr": float(b[..., 2].mean() - a[..., 2].mean()),
            "map_cb_cb": float(amap[0, 0]), "map_cb_cr": float(amap[0, 1]),  # Cb′ from Cb, from Cr
            "map_cr_cb": float(amap[1, 0]), "map_cr_cr": float(amap[1, 1]),  # Cr′ from Cb, from Cr
            # the map's gains along the two diagonal chroma axes, (Cb − Cr)/√2 (blue–orange, the axis that holds
            # most of a natural image's chroma variance) and (Cb + Cr)/√2 (green–magenta)
            "gain_blue_orange": float(AXES[0] @ amap @ AXES[0]), "gain_green_magenta": float(AXES[1] @ amap @ AXES[1])}


def oracles(img: np.ndarray, dec: np.ndarray, sigma: float = 8.0) -> dict[str, np.ndarray]:
    """The three oracle images of the module docstring (RGB in [0, 1])."""
    from scipy.ndimage import gaussian_filter

    a, b = to_ycc(img), to_ycc(dec)
    low = np.stack([gaussian_filter(a[..., k], sigma, mode="reflect") for k in (1, 2)], -1)
    flat = np.broadcast_to(a[..., 1:].mean(axis=(0, 1)), a[..., 1:].shape)
    return {"true_chroma": to_rgb(np.concatenate([b[..., :1], a[..., 1:]], -1)),
            "lowpass_chroma": to_rgb(np.concatenate([b[..., :1], low], -1)),
            "flat_chroma": to_rgb(np.concatenate([a[..., :1], flat], -1))}


def block_means(img: np.ndarray, block: int = 16) -> np.ndarray:
    """(H, W, 3) → (H // block, W // block, 3) Y′, Cb, Cr averaged over each block (one latent position)."""
    h, w = img.shape[0] // block, img.shape[1] // block
    return to_ycc(img[: h * block, : w * block]).reshape(h, block, w, block, 3).mean(axis=(1, 3))


def linear_r2(features: np.ndarray, targets: np.ndarray) -> list[float]:
    """R² of the least-squares affine fit of each column of ``targets`` (N, K) from ``features`` (N, C)."""
    a = np.concatenate([np.asarray(features, np.float64), np.ones((len(features), 1))], axis=1)
    t = np.asarray(targets, np.float64)
    coef, *_ = np.linalg.lstsq(a, t, rcond=None)
    return [float(1.0 - ((a @ coef[:, k] - t[:, k]) ** 2).mean() / t[:, k].var()) for k in range(t.shape[1])]


def encoder_stages(module, x):
    """Every output of E (akutsu2020's ``analysis_stages``: four bodies, then the latent conv), for
    ``apply(method=…)``; other models (the bmshj2018-hyperprior control of docs/AKUTSU.md "Colour"): their
    latent only."""
    if hasattr(module, "analysis_stages"):
        return module.analysis_stages(x)
    return [module.analysis(x)]


def pool_to_blocks(f: np.ndarray, stride: int, h: int, w: int, block: int = 16) -> np.ndarray:
    """(·, ·, C) features at 1/``stride`` of the image's resolution → (h·w, C): their mean over each of the
    image's h × w blocks of ``block``² pixels (the rows of :func:`block_means`)."""
    r = block // stride
    f = np.asarray(f)[: h * r, : w * r]
    return f.reshape(h, r, w, r, f.shape[-1]).mean(axis=(1, 3)).reshape(h * w, -1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an exported akutsu2020 model directory")
    ap.add_argument("--images", default=DEFAULT_IMAGES, help="comma-separated Kodak names")
    ap.add_argument("--kodak", default=None, help="the Kodak folder (default $LIC_JAX_SHARED/data/kodak)")
    ap.add_argument("--init", type=int, default=None, metavar="SEED",
                    help="also report latent_r2 for a fresh initialisation of the model (this PRNG seed)")
    ap.add_argument("--out", required=True, help="JSON output path")
    args = ap.parse_args(argv)
    import jax
    import jax.numpy as jnp
    from PIL import Image

    from lic_jax.artifact import load_artifact
    from lic_jax.coding import Codec
    from lic_jax.metrics import ms_ssim
    from lic_jax.utils.paths import shared_data

    kodak = args.kodak or shared_data("kodak")
    names = [n.strip() for n in args.images.split(",") if n.strip()]
    missing = [n for n in names if not os.path.isfile(os.path.join(kodak, f"{n}.png"))]
    if missing:
        sys.exit(f"akutsu_colour_check: no {', '.join(missing)} in {kodak}")
    art = load_artifact(args.model)
    codec = Codec.from_artifact(art)
    ms = lambda u, v: float(ms_ssim(jnp.asarray(u[None], jnp.float32), jnp.asarray(v[None], jnp.float32)))  # noqa: E731
    m = codec.model
    inits = {"trained": art.variables}
    if args.init is not None:
        inits["init"] = m.init(jax.random.PRNGKey(args.init), jnp.zeros((1, 64, 64, 3), jnp.float32))
    feats = {k: [] for k in inits}
    rows, blocks = [], []
    for n in names:
        u8 = np.asarray(Image.open(os.path.join(kodak, f"{n}.png")).convert("RGB"))
        x = jnp.asarray(u8[None] / 255.0, jnp.float32)
        bm = block_means(u8 / 255.0)
        for k, v in inits.items():  # unrounded latents: at init |y| ≪ ½ rounds to 0
            outs = m.apply(v, x, method=encoder_stages)
            feats[k].append([pool_to_blocks(o[0], u8.shape[0] // o.shape[1], *bm.shape[:2]) for o in outs])
        blocks.append(bm.reshape(-1, 3))
        data = codec.compress(u8)
        img, dec = u8 / 255.0, codec.decompress(data) / 255.0
        row = {"image": n, "bpp": 8 * len(data) / (u8.shape[0] * u8.shape[1]), **chroma_stats(img, dec),
               "ms_ssim": ms(img, dec)}
        row.update({f"ms_ssim_{k}": ms(img, v) for k, v in oracles(img, dec).items()})
        rows.append(row)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    keys = [k for k in rows[0] if k != "image"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    t = np.concatenate(blocks)
    enc = {k: [dict(zip(("y", "cb", "cr"), linear_r2(np.concatenate([im[j] for im in f]), t)))
               for j in range(len(f[0]))] for k, f in feats.items()}
    r2 = {k: v[-1] for k, v in enc.items()}
    out = {"model": os.path.abspath(args.model), "images": names, "rows": rows, "mean": mean, "latent_r2": r2,
           "encoder_r2": enc}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print("mean " + " ".join(f"{k}={v:.4f}" for k, v in mean.items()))
    for k, v in enc.items():
        print(f"encoder_r2 ({k}, E's bodies 1-4, latent) " +
              "  ".join("/".join(f"{val:.2f}" for val in stage.values()) for stage in v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
