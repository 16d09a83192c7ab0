"""Export the step-0 parameters of a toderici2017 run as an artifact (issue 15: the first point of
the AUC-against-steps trend, ``experiments/toderici_auc_trend.py``).

No checkpoint holds step 0, but train.py's initial state is a pure function of the config:
``create_train_state(model, tx, fold_in(PRNGKey(seed), 0))`` (``lic_jax/train/loop.py``:
``init_key``). ``--check VAL_DIR`` re-computes the validation L1 of the export on the run's
validation crops, to compare with the run's step-0 ``val`` record in ``metrics.jsonl`` (for
``modes/lstm-one-shot-cosine``: l1_1 0.2517329454421997, loss 0.25227109901607037, equal to the
last digit).

    python experiments/toderici_export_init.py \\
        --arch cell=lstm,mode=one-shot,width=0.125,iterations=16,schedule=cosine --steps 3000 --lr 5e-4 \\
        --out ~/lic_runs/toderici/eval-lstm0/artifact --check ../shared/data/val
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import toderici2017  # noqa: E402
from lic_jax.train import parallel  # noqa: E402
from lic_jax.train.export import export_artifact, export_metadata  # noqa: E402
from lic_jax.train.optim import make_optimizer  # noqa: E402
from lic_jax.train.setup import build_model, resolve_variable_rate  # noqa: E402
from lic_jax.train.state import create_train_state  # noqa: E402


def validation_l1(params, model, val_dir, crop=128, limit=16, batch=8):
    """Per-iteration mean L1 on the centre crops the run validates on (its eval step)."""
    from lic_jax.train.input_pipeline import eval_batches, make_source
    from lic_jax.train.iterative import make_eval_step

    mesh = parallel.make_mesh()
    step = make_eval_step(model, mesh)
    tot = None
    for local, w in eval_batches(make_source(val_dir), batch, crop, 0, 1, limit):
        s = parallel.fetch(step(params, local, w)[0])
        tot = s if tot is None else {k: tot[k] + s[k] for k in s}
    return np.asarray(tot["l1"], np.float64) / float(tot["count"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, help="configs/toderici2017.py argument of the run")
    p.add_argument("--steps", type=int, required=True, help="the run's num_steps (the schedule)")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="artifact directory to write")
    p.add_argument("--check", metavar="VAL_DIR", help="print the export's validation L1 (crop 128, 16 images)")
    a = p.parse_args(argv)
    c = toderici2017.get_config(a.arch)
    c.num_steps, c.batch_size, c.optim.lr, c.seed = a.steps, a.batch, a.lr, a.seed
    mesh = parallel.make_mesh()
    model, spec = build_model(c)
    tx, _ = make_optimizer(c, a.steps)
    init_key = jax.random.fold_in(jax.random.PRNGKey(int(c.seed)), 0)  # loop.py's init_key
    state = create_train_state(model, tx, init_key, mesh)
    params = parallel.fetch(state.params)
    md = export_metadata(c, resolve_variable_rate(c, spec), exported_step=0, exported_from="init", checkpoint_meta={})
    export_artifact(spec, params, a.out, md, bool(c.export.fit_quantiles))
    print(f"exported the step-0 parameters to {a.out}")
    if a.check:
        l1 = validation_l1(params, model, a.check)
        print(f"validation: l1_1 {float(l1[0])!r}, loss {float(l1.mean())!r} (compare with the run's step-0 val record)")


if __name__ == "__main__":
    main()
