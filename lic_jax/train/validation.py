"""Validation over the λ set: one function for fixed-rate (one λ) and λ-conditioned models.

Metrics of a fixed-rate model: ``bpp``, ``mse``, ``psnr``, ``loss`` (…). A λ-conditioned model
adds per-λ metrics ``bpp@λ``, ``psnr@λ``, ``loss@λ`` (…); then ``loss`` = Σ w_λ loss_λ (what
'best' selects on) and ``bpp`` / ``psnr`` / ``mse`` / ``ms_ssim`` are means over the set.
"""

from __future__ import annotations

import math

import numpy as np

from . import parallel
from .input_pipeline import eval_batches

__all__ = ["make_validator", "local_rows"]


def local_rows(x):
    """This process's rows of a batch-sharded array (in global order)."""
    if x.is_fully_addressable:
        return np.asarray(x)
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    seen, parts = set(), []
    for s in shards:
        k = s.index[0].start or 0
        if k not in seen:
            seen.add(k)
            parts.append(np.asarray(s.data))
    return np.concatenate(parts)


def make_validator(eval_step, lset, conditioned: bool, val_src, mesh, writer, *, batch: int, crop: int,
                   limit: int, tb_images: int):
    """``validate(params, step) → metrics`` (also written to ``writer`` under 'val'); {} without data."""
    import jax

    pidx, pcount = jax.process_index(), jax.process_count()

    def validate(params, step):
        if eval_step is None or val_src is None:
            return {}
        res, per, shown = {}, {}, None
        last = len(lset.lmbdas) - 1
        for k, lam in enumerate(lset.lmbdas):
            totals = None
            for local, w in eval_batches(val_src, batch, crop, pidx, pcount, limit):
                s, xh = eval_step(params, parallel.global_batch(local, mesh), parallel.global_batch(w, mesh), lam)
                s = parallel.fetch(s)
                totals = s if totals is None else {kk: totals[kk] + s[kk] for kk in s}
                if k == last and shown is None and tb_images > 0 and pidx == 0:
                    shown = np.concatenate([local[:tb_images], local_rows(xh)[:tb_images]], axis=2)  # side by side
            if totals is None:
                return {}
            n = max(1.0, float(totals.pop("count")))
            for kk, v in totals.items():
                val = float(v) / n
                res[f"{kk}{lset.tag(k)}" if conditioned else kk] = val
                per.setdefault(kk, []).append(val)
        # over the set (with one λ of weight 1: the same numbers, exactly)
        res["loss"] = float(sum(wk * lk for wk, lk in zip(lset.weights, per["loss"])))
        for kk in ("bpp", "mse", "psnr", "ms_ssim"):
            if kk in per:
                res[kk] = float(np.mean(per[kk]))
        if "ms_ssim" in res:
            res["ms_ssim_db"] = -10.0 * math.log10(max(1e-12, 1.0 - res["ms_ssim"]))
        writer.write(step, "val", res)
        if shown is not None:
            tag = "val/original|reconstruction"
            writer.images(step, f"{tag} (λ={lset.lmbdas[-1]:.4g})" if conditioned else tag, shown)
        return res

    return validate
