"""Start point for a CPU-sized mbt2018 (issue 13's RD-cost measurement of ``mbt2018-int``).

mbt2018's analysis and synthesis transforms have the layout of bmshj2018-hyperprior's (Minnen et
al. 2018, Fig. 2 vs Ballé et al. 2018, Fig. 4), so a bundled-default g_a / g_s and factorized z
density are grafted into a freshly initialised mbt2018 (N=128, M=192, seed 0); h_a, h_s, the
context model and the entropy-parameter network start from the initialiser. ``configs/mbt2018_small.py``
then fine-tunes everything with ``init_from``.

    python scripts/make_mbt2018_init.py OUT_DIR
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


def main(out: str):
    src = load_artifact(first_default_model_path())
    model, spec = get_model("mbt2018", 4, N=128, M=192)
    params = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3), jnp.float32))["params"])
    params = dict(params)
    grafted = [k for k in params if k.startswith(("g_a_", "g_s_")) or k == "entropy_bottleneck"]
    for k in grafted:
        new = jax.tree_util.tree_map(np.asarray, src.variables["params"][k])
        assert jax.tree_util.tree_map(np.shape, new) == jax.tree_util.tree_map(np.shape, params[k]), k
        params[k] = new
    save_artifact(out, spec, {"params": params}, metadata={"init": f"g_a, g_s, entropy_bottleneck from the bundled "
                                                              f"default ({src.fingerprint[:12]}); rest seed 0"})
    print(f"wrote {out} (grafted {len(grafted)} modules)")


if __name__ == "__main__":
    main(sys.argv[1])
