"""When does a codec learn colour? A small, fast training loop outside train.py (docs/AKUTSU.md "Colour").

    python experiments/akutsu_colour_dynamics.py --model akutsu --loss ms-ssim --data many --steps 600 \
        --out benchmarks/results/akutsu/colour_dynamics_akutsu_msssim_many.json

It trains a fresh model with Adam (lr 5e-4, as the colour probes) on batches of ``--batch`` (default four)
``--crop``² (default 128²) crops of the training photos (``shared/data/photos``, downscaled by ½, or by less
where ½ leaves a side under the crop), each crop from a random photo, with the loss

* ``mse``: 0.013·255²·MSE(x̂, x) + r·bpp (CompressAI's q3 λ), or
* ``ms-ssim``: 6·(1 − MS-SSIM(x̂, x)) + r·bpp (6 = 1 + λ_p, eq. 3's weight when G_m and the fused image
  agree);

with r = ``--rate-weight`` (default 0.01: the rate barely counts). The CPU run's MSE phase weighs the rate
like r ≈ 0.62: κ·(MSE_m + λ_p·wMSE) + λ_e·bpp with κ = λ_e·0.0035·255² is, for a fused image close to G_m's
and divided by λ_e, ≈ 6·0.0035·255²·MSE + bpp, i.e. 0.013·255²·MSE + 0.62·bpp. ``--rate-ramp N`` raises r
linearly from 0 over the first N steps. ``--detail-weight w`` also runs G_s and splits the same total
distortion weight 1 : w between G_m's image and the fused one (eq. 3 with λ_p = w, no masks: t_a uniform).

x̂ is G_m's output for ``akutsu`` (the CPU run's network: width ¼, one RCAB per group, GDN decoder bodies,
mean shift; the detail decoder runs only with ``--detail-weight``) and the decoder's for ``bmshj`` (bmshj2018-hyperprior q1).
``--data one``: the same four crops of one photo every step (can the network represent the colour at all?);
``many``: four random crops of the first 300 photos per step (what training sees). Every ``--every`` steps
it reports, on one fixed batch, the PSNR and the correlation of the decode's Cb / Cr planes with the
image's (BT.601, :mod:`lic_jax.utils.colour`), and the ratio of their chroma standard deviations
(``akutsu_colour_check.chroma_stats``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "experiments"))

MODELS = {"akutsu": ("akutsu2020", dict(width=0.25, blocks=1, decoder_norm="gdn", mean_shift=True)),
          "bmshj": ("bmshj2018-hyperprior", dict(quality=1))}
CROP, BATCH = 128, 4


def _load(path: str, crop: int = CROP) -> np.ndarray:
    """The photo downscaled by ½, or by less where ½ would leave a side under ``crop`` (never upscaled)."""
    from PIL import Image

    a = Image.open(path).convert("RGB")
    f = min(1.0, max(0.5, crop / min(a.width, a.height)))
    return np.asarray(a.resize((round(a.width * f), round(a.height * f)), Image.BICUBIC)) / 255.0


def crops(img: np.ndarray, rng: np.random.Generator, n: int = BATCH, crop: int = CROP) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        i, j = rng.integers(0, img.shape[0] - crop + 1), rng.integers(0, img.shape[1] - crop + 1)
        out.append(img[i:i + crop, j:j + crop])
    return out


def photo_pool(files: list[str], crop: int = CROP) -> list[np.ndarray]:
    """``--data many``'s photos: the first 300, loaded by :func:`_load`, those with both sides ≥ ``crop``."""
    return [a for a in (_load(f, crop) for f in files[:300]) if min(a.shape[:2]) >= crop]


def train_batch(pool: list[np.ndarray], s: int, n: int = BATCH, crop: int = CROP) -> np.ndarray:
    """Step ``s``'s batch (``s`` < 0: the fixed measuring batches): ``n`` crops, each of a random photo of the
    pool, seeded by the step alone (experiments/akutsu_colour_bias.py redraws them)."""
    r = np.random.default_rng(1000 + s)
    return np.stack([crops(pool[r.integers(len(pool))], r, 1, crop)[0] for _ in range(n)])


def chroma(x: np.ndarray, x_hat: np.ndarray) -> dict:
    """PSNR and :func:`akutsu_colour_check.chroma_stats` (Cb / Cr correlation, chroma std ratio, mean offset) of a decode
    against its images (NHWC in [0, 1], pooled over the batch)."""
    from akutsu_colour_check import chroma_stats

    x_hat = np.clip(np.asarray(x_hat, np.float64), 0.0, 1.0)
    x = np.asarray(x, np.float64)
    rows = lambda a: a.reshape(-1, a.shape[2], 3)  # noqa: E731  (B, H, W, 3) → (B·H, W, 3): one image
    return {"psnr": float(-10 * np.log10(np.mean((x_hat - x) ** 2))), **chroma_stats(rows(x), rows(x_hat))}


def mean_cbcr(a: np.ndarray) -> np.ndarray:
    """Mean (Cb, Cr) of RGB images in [0, 1] (clipped first; BT.601, centred chroma)."""
    from lic_jax.utils.colour import rgb_to_ycbcr

    return rgb_to_ycbcr(np.clip(np.asarray(a, np.float64), 0.0, 1.0), offset=0.0).reshape(-1, 3).mean(0)[1:]


def mean_chroma(x: np.ndarray, batch: np.ndarray) -> dict:
    """The mean Cb / Cr of the step's training batch minus the fixed batch's images' (the decode's own offset,
    ``bias_cb`` / ``bias_cr``, comes from :func:`chroma`): does the decode's colour bias follow the batches?"""
    tr = mean_cbcr(batch) - mean_cbcr(x)
    return {"batch_cb": float(tr[0]), "batch_cr": float(tr[1])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="akutsu")
    ap.add_argument("--loss", choices=("mse", "ms-ssim"), default="ms-ssim")
    ap.add_argument("--data", choices=("one", "many"), default="many")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--crop", type=int, default=CROP, help="crop size (the CPU run: 256)")
    ap.add_argument("--batch", type=int, default=BATCH, help="crops per step (the CPU run: 4; 2 until session o)")
    ap.add_argument("--detail-weight", type=float, default=0.0,
                    help="w > 0: also run G_s and weigh the fused image's distortion w : 1 (the CPU run: λ_p = 5)")
    ap.add_argument("--eval-batches", type=int, default=1,
                    help="with --data many: measure on this many fixed batches (less noise than the default one)")
    ap.add_argument("--clip-norm", type=float, default=0.0,
                    help="> 0: clip the gradient's global norm before Adam (the CPU run: 1.0, optim.clip_norm)")
    ap.add_argument("--lr", type=float, default=5e-4, help="Adam's learning rate (the CPU run's MSE phase: 5e-4)")
    ap.add_argument("--rate-weight", type=float, default=0.01, help="r, the weight of bpp in the loss")
    ap.add_argument("--rate-ramp", type=int, default=0, help="raise r linearly from 0 over this many steps")
    ap.add_argument("--photos", default=None, help="training photos (default $LIC_JAX_SHARED/data/photos)")
    ap.add_argument("--out", required=True, help="JSON output path")
    ap.add_argument("--save", default=None, help="also export the trained model there (an artifact directory, "
                    "quantiles fitted as train.py's export), e.g. for experiments/akutsu_colour_check.py")
    args = ap.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import optax
    from tqdm import tqdm

    from lic_jax.metrics import ms_ssim
    from lic_jax.models.base import total_bits
    from lic_jax.models.registry import get_model
    from lic_jax.utils.paths import shared_data

    photos = args.photos or shared_data("photos")
    files = sorted(glob.glob(os.path.join(photos, "*.jpg")))
    if not files:
        sys.exit(f"akutsu_colour_dynamics: no .jpg photos in {photos}")
    rng = np.random.default_rng(0)
    if args.data == "one":
        fixed = np.stack(crops(_load(os.path.join(photos, "bsds_100080.jpg"), args.crop), rng, args.batch, args.crop))
        batch = lambda s: fixed  # noqa: E731
    else:
        pool = photo_pool(files, args.crop)
        batch = lambda s: train_batch(pool, s, args.batch, args.crop)  # noqa: E731

        fixed = np.concatenate([batch(-1 - k) for k in range(args.eval_batches)])
    name, kw = MODELS[args.model]
    model, spec = get_model(name, **kw)
    x0 = jnp.asarray(fixed[:1], jnp.float32)
    params = model.init({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, x0)["params"]
    tx = optax.chain(*([optax.clip_by_global_norm(args.clip_norm)] if args.clip_norm > 0 else []), optax.adam(args.lr))
    opt = tx.init(params)
    wd = args.detail_weight
    if wd and name != "akutsu2020":
        sys.exit("akutsu_colour_dynamics: --detail-weight needs --model akutsu")
    extra = {"detail": bool(wd)} if name == "akutsu2020" else {}

    def fwd(p, key, x, r):
        o = model.apply({"params": p}, x, train=True, rngs={"noise": key}, **extra)
        xm = o.get("x_hat_main", o["x_hat"])
        outs = [(1.0 / (1.0 + wd), xm)] + ([(wd / (1.0 + wd), o["x_hat"])] if wd else [])  # (weight, image)
        bpp = jnp.mean(total_bits(o["likelihoods"])) / (args.crop * args.crop)
        if args.loss == "mse":
            d = 0.013 * 255.0 ** 2 * sum(a * jnp.mean((im - x) ** 2) for a, im in outs)
        else:
            d = 6.0 * sum(a * (1.0 - ms_ssim(im, x, data_range=1.0, small="shrink")) for a, im in outs)
        return d + r * bpp, (xm, bpp)

    @jax.jit
    def step(p, o, key, x, r):
        (loss, _), g = jax.value_and_grad(fwd, has_aux=True)(p, key, x, r)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    def rate_weight(s: int) -> float:
        return args.rate_weight * (min(1.0, s / args.rate_ramp) if args.rate_ramp else 1.0)

    look = jax.jit(fwd)
    rows, t0 = [], time.time()
    bar = tqdm(total=args.steps + 1, desc=f"{args.model} {args.loss} {args.data}", unit="step", file=sys.stderr)
    for s in range(args.steps + 1):  # a row after the update of step s (0, every, 2·every, …)
        b = batch(s)
        params, opt, loss = step(params, opt, jax.random.PRNGKey(100 + s), jnp.asarray(b, jnp.float32),
                                 jnp.float32(rate_weight(s)))
        bar.update(1)
        if s % args.every == 0:
            _, (xm, bpp) = look(params, jax.random.PRNGKey(7), jnp.asarray(fixed, jnp.float32), jnp.float32(0.0))
            rows.append({"step": s, "loss": float(loss), "bpp": float(bpp), **chroma(fixed, xm),
                         **mean_chroma(fixed, b),
                         "seconds": round(time.time() - t0, 1)})
            bar.write(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()))
    bar.close()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"model": args.model, "loss": args.loss, "data": args.data, "steps": args.steps,
                   "crop": args.crop, "batch": args.batch, "rate_weight": args.rate_weight, "rate_ramp": args.rate_ramp,
                   "detail_weight": wd, "clip_norm": args.clip_norm, "lr": args.lr, "eval_batches": args.eval_batches,
                   "jax": jax.__version__, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")
    if args.save:
        from lic_jax.train.export import export_artifact

        export_artifact(spec, params, args.save, {"source": "experiments/akutsu_colour_dynamics.py", **vars(args)})
        print(f"exported {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
