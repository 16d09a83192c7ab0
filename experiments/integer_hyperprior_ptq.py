"""Post-training quantisation of a trained bmshj2018-hyperprior's hyper-synthesis into an integer
network (issue 13; Ballé, Johnston & Minnen, ICLR 2019), measured on Kodak.

    .venv/bin/python experiments/integer_hyperprior_ptq.py [--calib 64] [--kodak 24]

Model: the first shipped default (lic_jax/assets/models/bmshj2018-hyperprior-q4: bmshj2018-hyperprior, N=128,
M=192, trained on ../shared/data/train). h_s = deconv5/2 → ReLU → deconv5/2 → ReLU → conv3/1 →
ReLU (σ), as in lic_jax/models/bmshj2018.py; each becomes an ``IntegerConv`` (QReLU).

* Input: ẑ = q + median_c (what the hyperprior coder feeds h_s) as the integer
  ``clip(q·2**k0 + rint(median_c·2**k0), ±(2**(in_bits−1) − 1))`` (medians are host constants,
  rounded once; k0 from calibration).
* Hidden activations: power-of-two scales from the max of the float activations over calibration
  crops of ../shared/data/train (never Kodak): k = floor(log2((2**act_bits − 1) / max)).
* Output: σ as an integer at scale 2**−k_σ with ``sigma_bits`` bits (k_σ = sigma_bits − 8, so σ up
  to 256 is representable; anything ≥ table[62] maps to the last index anyway), then the table
  index by integer thresholds: T_i = the smallest integer σ_int with
  ``scale_indexes(float32(σ_int · 2**−k_σ)) > i`` (found by evaluating scale_indexes' own rule on
  every representable σ_int), index = Σ_i [σ_int ≥ T_i].

Reported on Kodak: the fraction of y positions whose table index differs from the float path, and
the ideal bits of the y symbols round(y) under the integer vs the float indexes (% increase).
Writes benchmarks/results/integer_hyperprior_ptq.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from lic_jax.artifact import load_artifact  # noqa: E402
from lic_jax.coding.image_io import read_image  # noqa: E402
from lic_jax.coding.latent_coders.factorized import medians as eb_medians  # noqa: E402
from lic_jax.coding.tables import gaussian_scale_tables  # noqa: E402
from lic_jax.default_model import first_default_model_path  # noqa: E402
from lic_jax.entropy_models.gaussian import scale_indexes, scale_table  # noqa: E402
from lic_jax.layers import integer as il  # noqa: E402
from lic_jax.layers.conv import conv2d, conv_transpose2d  # noqa: E402
from lic_jax.models.base import pad_image  # noqa: E402

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
OUT = os.path.join(ROOT, "benchmarks", "results", "integer_hyperprior_ptq.json")
# (name, transpose, stride) of h_s's convolutions, each followed by ReLU
HS = (("h_s_0", True, 2), ("h_s_2", True, 2), ("h_s_4", False, 1))


def load_images(folder, limit):
    paths = sorted(glob.glob(os.path.join(folder, "*.png")))[:limit]
    return [(os.path.basename(p), read_image(p).astype(np.float32) / np.float32(255.0)) for p in paths]


def latents(model, variables, images):
    """Per image: y (float), z symbols q, ẑ = q + median (exactly as the hyperprior coder)."""
    med = eb_medians(variables["params"])
    enc = jax.jit(lambda v, x: (lambda y: (y, model.apply(v, y, method="hyper_analysis")))(
        model.apply(v, x, method="analysis")))
    out = []
    for name, img in images:
        x = pad_image(img[None], model.downsampling)
        y, z = enc(variables, jnp.asarray(x))
        y, z = np.asarray(y[0]), np.asarray(z[0])
        q = np.rint(z - med).astype(np.int32)
        out.append({"name": name, "y": y, "q": q, "z_hat": q.astype(np.float32) + med})
    return out, med


def float_hs(params):
    """h_s in float (same ops as the model), returning every post-ReLU activation."""
    def f(z_hat):
        acts, a = [], z_hat
        for name, tr, s in HS:
            k, b = params[name]["kernel"], params[name]["bias"]
            a = (conv_transpose2d(a, k, s) if tr else conv2d(a, k, s)) + b
            a = jax.nn.relu(a)
            acts.append(a)
        return acts
    return jax.jit(f)


def sigma_thresholds(k_sigma: int, sigma_bits: int) -> np.ndarray:
    """T_i (i = 0..62): the smallest σ_int with scale_indexes(σ_int · 2**−k_σ) > i (int64)."""
    n = np.arange(2**sigma_bits, dtype=np.int64)
    s = (n.astype(np.float64) * 2.0**-k_sigma).astype(np.float32)  # exact: n < 2**24
    idx = scale_indexes(s)
    assert (np.diff(idx) >= 0).all()
    levels = len(scale_table())
    t = np.searchsorted(idx, np.arange(1, levels), side="left")  # first n with idx ≥ i + 1
    t = np.where(t >= len(n), 2**sigma_bits, t)  # unreachable index: threshold past the range
    # the integer rule reproduces scale_indexes on every representable σ_int
    assert (np.searchsorted(t, n, side="right") == idx).all()  # = #{i: n ≥ T_i}, scale_indexes' value
    return t


def integer_index(sigma_int, thresholds):
    """Table index from integer σ by integer comparisons: Σ_i [σ_int ≥ T_i] (int32)."""
    t = jnp.asarray(thresholds, jnp.int32)
    return jnp.sum((sigma_int[..., None] >= t).astype(jnp.int32), axis=-1)


def shift_for(amax: float, bits: int, signed: bool) -> int:
    """Largest k with amax · 2**k ≤ 2**bits − 1 (unsigned) or 2**(bits−1) − 1 (signed)."""
    lim = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return int(math.floor(math.log2(lim / amax)))


def build(params, med, calib_acts, calib_zmax, weight_bits, act_bits, in_bits, sigma_bits):
    k0 = shift_for(calib_zmax, in_bits, signed=True)
    shifts = [k0] + [shift_for(calib_acts[i], act_bits, False) for i in range(len(HS) - 1)] + [sigma_bits - 8]
    layers = []
    for i, (name, tr, s) in enumerate(HS):
        last = i == len(HS) - 1
        layers.append(il.quantize_conv(params[name]["kernel"], params[name]["bias"], shifts[i], weight_bits,
                                       out_shift=shifts[i + 1], stride=s, transpose=tr, activation="qrelu",
                                       act_bits=sigma_bits if last else act_bits))
    in_max = 2 ** (in_bits - 1) - 1
    bounds = il.check_bounds(layers, in_max)  # raises before anything runs if int32 could overflow
    med_q = np.rint(med.astype(np.float64) * 2.0**k0).astype(np.int32)
    return layers, shifts, bounds, med_q, in_max


def run_config(params, med, calib_acts, calib_zmax, kodak, idx_float, tables, weight_bits, act_bits, in_bits,
               sigma_bits, calib_rule="max"):
    layers, shifts, bounds, med_q, in_max = build(params, med, calib_acts, calib_zmax, weight_bits, act_bits,
                                                  in_bits, sigma_bits)
    thr = sigma_thresholds(shifts[-1], sigma_bits)

    @jax.jit
    def int_index(q):
        a = jnp.clip(q * jnp.int32(2 ** shifts[0]) + jnp.asarray(med_q), -in_max, in_max)
        return integer_index(il.apply_integer_network(layers, a), thr)

    mism = n = far = 0
    bits_f = bits_i = 0.0
    clipped = 0
    for r, idf in zip(kodak, idx_float):
        q = r["q"]
        clipped += int((np.abs(q.astype(np.int64) * 2 ** shifts[0] + med_q) > in_max).sum())
        idi = np.asarray(int_index(jnp.asarray(q[None])))[0]
        mism += int((idi != idf).sum())
        far += int((np.abs(idi.astype(np.int64) - idf) > 1).sum())
        n += idi.size
        sym = np.rint(r["y"]).astype(np.int64)  # round(y − 0): μ = 0 for the scale hyperprior
        bits_f += tables.ideal_bits(sym, idf)
        bits_i += tables.ideal_bits(sym, idi)
    return {
        "weight_bits": weight_bits, "act_bits": act_bits, "input_bits": in_bits, "sigma_bits": sigma_bits,
        "shifts": shifts, "max_accumulator_bound": max(bounds), "accumulator_bounds": bounds,
        "index_mismatch_pct": 100.0 * mism / n, "index_off_by_more_than_1_pct": 100.0 * far / n,
        "y_positions": n,
        "y_bits_float": bits_f, "y_bits_integer": bits_i, "rate_increase_pct": 100.0 * (bits_i / bits_f - 1.0),
        "z_inputs_clipped": clipped, "calibration": calib_rule,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calib", type=int, default=64, help="number of ../shared/data/train crops for calibration")
    ap.add_argument("--kodak", type=int, default=24)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    t0 = time.time()
    art = load_artifact(first_default_model_path())
    model, variables = art.model, art.variables
    params = jax.tree_util.tree_map(np.asarray, variables["params"])
    hs = float_hs({k: params[k] for k, _, _ in HS})

    calib, med = latents(model, variables, load_images(os.path.join(DATA, "train"), args.calib))
    zmax = max(float(np.abs(r["z_hat"]).max()) for r in calib)
    acts = [[] for _ in HS]
    for r in calib:
        for i, a in enumerate(hs(jnp.asarray(r["z_hat"][None]))):
            acts[i].append(np.asarray(a).ravel())
    acts = [np.concatenate(a) for a in acts]
    calib_rules = {"max": np.array([a.max() for a in acts]),
                   "p99.99": np.array([np.percentile(a, 99.99) for a in acts])}
    acts_max = calib_rules["max"]

    kodak, _ = latents(model, variables, load_images(os.path.join(DATA, "kodak"), args.kodak))
    idx_float = [np.asarray(scale_indexes(np.asarray(hs(jnp.asarray(r["z_hat"][None]))[-1][0]))) for r in kodak]
    tables = gaussian_scale_tables()

    # (weight bits, hidden activation bits, input bits, σ bits, calibration rule)
    configs = [(8, 8, 8, 16, "max"), (8, 8, 12, 16, "max"), (8, 8, 12, 20, "max"), (8, 8, 12, 24, "max"),
               (8, 8, 12, 24, "p99.99"), (8, 10, 12, 24, "max"), (8, 12, 12, 24, "max"), (10, 10, 12, 24, "max"),
               (10, 12, 12, 24, "max"), (12, 12, 12, 24, "max")]
    results = []
    for wb, ab, ib, sb, rule in configs:
        try:
            res = run_config(params, med, calib_rules[rule], zmax, kodak, idx_float, tables, wb, ab, ib, sb, rule)
        except ValueError as e:  # check_bounds refused: int32 could overflow
            res = {"weight_bits": wb, "act_bits": ab, "input_bits": ib, "sigma_bits": sb, "calibration": rule,
                   "refused": str(e)}
        results.append(res)

    print(f"{'w':>3} {'act':>4} {'in':>3} {'σ':>3} {'calib':>6}  {'shifts':<16} {'max |acc| bound':>16} "
          f"{'idx mismatch %':>15} {'|Δidx|>1 %':>10} {'y rate +%':>10} {'z clipped':>9}")
    for r in results:
        head = (f"{r['weight_bits']:>3} {r['act_bits']:>4} {r['input_bits']:>3} {r['sigma_bits']:>3} "
                f"{r['calibration']:>6}  ")
        if "refused" in r:
            print(head + "refused by check_bounds: " + r["refused"])
            continue
        print(head + f"{str(r['shifts']):<16} {r['max_accumulator_bound']:>16,d} {r['index_mismatch_pct']:>15.3f} "
              f"{r['index_off_by_more_than_1_pct']:>10.4f} {r['rate_increase_pct']:>10.3f} {r['z_inputs_clipped']:>9d}")
    doc = {
        "what": "PTQ of the trained default bmshj2018-hyperprior's h_s into integer layers "
                "(lic_jax.layers.integer); Kodak y table indexes vs the float path",
        "model": {"artifact": "lic_jax/assets/models/bmshj2018-hyperprior-q4", "fingerprint": art.fingerprint,
                  "name": art.spec.name, "quality": art.spec.quality},
        "calibration": {"data": f"../shared/data/train (first {len(calib)} crops, sorted)",
                        "rule": "per-tensor power-of-two shift from the max (or 99.99th percentile) of the "
                                "float activations", "max_abs_z_hat": zmax,
                        "hidden_acts": {k: v.tolist() for k, v in calib_rules.items()}},
        "evaluation": f"../shared/data/kodak ({len(kodak)} images)",
        "rate": "ideal bits (gaussian_scale_tables().ideal_bits) of round(y) under each index map; z unchanged",
        "versions": {"jax": jax.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "wall_s": round(time.time() - t0, 1),
        "results": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {args.out} ({doc['wall_s']} s)")


if __name__ == "__main__":
    main()
