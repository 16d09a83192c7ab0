"""Start point for the long bundled-model run (issue 18) from the best exported artifact.

The long run (``configs/bundled_vr.py``: mae-hyperprior, N=128, M=192) lost its work directory
when the machine changed (the previous 2,300 steps, 2.05 CPU-hours, were not exported). Rather
than start from the initialiser, its transforms are grafted from the first bundled default model
(bmshj2018-hyperprior, N=128, M=192, 2,000 steps; Ballé et al. 2018 Fig. 4), whose layer stack
is the same up to naming: the default interleaves convolutions and GDNs as ``g_a_0 … g_a_6``,
the modulated model names them ``g_a_0 … g_a_3`` and ``gdn_0 … gdn_2`` (likewise ``g_s``/``igdn``).
h_a, h_s and the factorized z density carry over unchanged. The λ-modulation and demodulation
networks (Song et al. 2021's MAE, seed 001) start from the initialiser (seed 0).

    python scripts/make_bundled_vr_init.py OUT_DIR
    LIC_INIT=OUT_DIR scripts/long_run.sh start

``--source ARTIFACT`` grafts another bmshj2018-hyperprior artifact instead, at its own N and M: the
narrow long run (``configs/bundled_vr.py:narrow``, N=64, M=96) starts from the recipe sweep's
narrow model (``experiments/recipe_sweep.py``, variant ``n64-m96-lr5e-4``).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lic_jax.artifact import load_artifact, save_artifact  # noqa: E402
from lic_jax.default_model import first_default_model_path  # noqa: E402
from lic_jax.models import get_model  # noqa: E402

LMBDAS = "0.0018,0.0035,0.0067,0.0130,0.0250,0.0483"  # configs/bundled_vr.py


def graft_map() -> dict[str, str]:
    """Target (mae-hyperprior) module name → source (bmshj2018-hyperprior) module name."""
    m = {"entropy_bottleneck": "entropy_bottleneck"}
    for side, gdn in (("g_a", "gdn"), ("g_s", "igdn")):
        for i in range(4):
            m[f"{side}_{i}"] = f"{side}_{2 * i}"
        for i in range(3):
            m[f"{gdn}_{i}"] = f"{side}_{2 * i + 1}"
    for side in ("h_a", "h_s"):
        for i in (0, 2, 4):
            m[f"{side}_{i}"] = f"{side}_{i}"
    return m


def main(out: str, source: str | None = None):
    src = load_artifact(source or first_default_model_path())
    if src.spec.name not in ("bmshj2018-hyperprior", "bmshj2018-hyperprior-int"):
        raise SystemExit(f"--source must be a bmshj2018-hyperprior artifact, not {src.spec.name}")
    N, M = int(src.spec.hparams.get("N", 128)), int(src.spec.hparams.get("M", 192))
    model, spec = get_model("mae-hyperprior", N=N, M=M, activation="exp", lmbda_input="log", lmbdas=LMBDAS)
    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    params = dict(jax.device_get(model.init(jax.random.PRNGKey(0), x, jnp.float32(0.0067))["params"]))
    sp = src.variables["params"]
    for dst, s in graft_map().items():
        new = jax.tree_util.tree_map(np.asarray, sp[s])
        if jax.tree_util.tree_map(np.shape, new) != jax.tree_util.tree_map(np.shape, params[dst]):
            raise SystemExit(f"shape mismatch grafting {s} -> {dst}")
        params[dst] = new
    kept = sorted(k for k in params if k not in graft_map())
    save_artifact(out, spec, {"params": params},
                  metadata={"init": f"transforms and z density grafted from "
                                    f"{'the first bundled default' if source is None else os.path.abspath(source)} "
                                    f"({src.fingerprint[:12]}, N={N}, M={M}); {', '.join(kept)} from the "
                                    f"initialiser (seed 0)"})
    print(f"wrote {out}: grafted {len(graft_map())} modules, initialiser for {len(kept)} ({', '.join(kept)})")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--source", help="a bmshj2018-hyperprior artifact (default: the first bundled default, bmshj2018-hyperprior q4)")
    a = ap.parse_args()
    main(a.out, a.source)
