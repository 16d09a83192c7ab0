#!/usr/bin/env python
"""The decoder's whole synthesis g_s in each form of its 5×5 stride-2 transposed convolutions
(issue 19, ``docs/SPEED.md``), interleaved run by run in one process.

Models: ``mbt2018`` and ``bmshj2018-hyperprior`` q3, random initialisation (seed 0), as the codec's
decoder runs them (``'auto-inference'``: the last, 3-channel layer in the dilated form), on
kodim01's latent shape (32 × 48). Forms of the other layers: ``winograd-phases`` (opt-in: it was
the decoder's default for an hour on 2026-12-03, docs/SPEED.md), ``winograd-blocked`` (the default)
and ``subpixel``.
Reported: median and min seconds per synthesis, the largest output difference between the phase
and the blocked form, and the other processes' CPU share (``benchmarks/quiet.py``).

    .venv/bin/python benchmarks/synthesis_forms.py --runs 9 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quiet import cpu_info, interleaved, timing_summary  # noqa: E402

FORMS = ("winograd-phases", "winograd-blocked", "subpixel")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--models", default="mbt2018,bmshj2018-hyperprior")
    p.add_argument("--json")
    a = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    import lic_jax.layers.conv as conv
    from lic_jax.coding.programs import inference_model
    from lic_jax.models import get_model

    resolve = conv.resolve_transpose_impl

    def forcing(form):  # the decoder's choice, with its Winograd layers in ``form``
        def r(impl, out_channels, backend=None):
            got = resolve(impl, out_channels, backend)
            return form if got in ("winograd-phases", "winograd-blocked") else got
        return r

    res = {"cpu": cpu_info(), "jax": jax.__version__, "runs": a.runs, "models": {}}
    for name in a.models.split(","):
        model, _ = get_model(name, 3)
        model = inference_model(model)
        v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3), jnp.float32))
        m = v["params"]["g_s_0"]["kernel"].shape[2]
        y = jnp.asarray(np.random.RandomState(0).randn(1, 32, 48, m).astype(np.float32) * 3)
        fns, outs = {}, {}
        try:
            for form in FORMS:
                conv.resolve_transpose_impl = forcing(form)  # read while tracing, below
                fns[form] = jax.jit(lambda v, y: model.apply(v, y, method="synthesis"))
                outs[form] = np.asarray(fns[form](v, y))
        finally:
            conv.resolve_transpose_impl = resolve
        ts, other = interleaved({form: lambda f=f: f(v, y).block_until_ready() for form, f in fns.items()}, a.runs)
        d = float(np.abs(outs["winograd-phases"] - outs["winograd-blocked"]).max())
        r = timing_summary(ts)
        r.update(max_abs_diff_phases_vs_blocked=d, others_cpu_frac_max=other)
        res["models"][name] = r
        print(name, "  ".join(f"{f} {np.median(t):.3f} s (min {min(t):.3f})" for f, t in ts.items()),
              f"  max|Δ| phases vs blocked {d:.1e}; other processes ≤ {100 * (other or 0):.0f} % CPU",
              flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
