#!/usr/bin/env python
"""Train a lic_jax compression model (rate–distortion), in the shape of flax's examples/imagenet.

    python train.py --config configs/bmshj2018_hyperprior.py --workdir runs/hp-q3
    python train.py --config configs/bmshj2018_hyperprior.py:3,ms-ssim --workdir runs/hp-q3-msssim \\
        --config.data.train='/data/photos/**/*.jpg' --config.batch_size=16 --config.num_steps=2000000
    python train.py --config configs/smoke.py --workdir /tmp/smoke          # a tiny run
    python train.py --config configs/bmshj2018_hyperprior.py --workdir runs/hp-q3 --mode=export

Re-running the same command resumes from the newest intact checkpoint in --workdir.
Multi-process (one process per host; on clusters jax.distributed finds its peers itself with
--num_processes=-1):
    python train.py ... --coordinator_address=host0:1234 --num_processes=2 --process_id=0
See docs/TRAINING.md.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

# Make `configs/` importable and the local lic_jax usable without installation.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file (configs/*.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the exported artifact.")
flags.DEFINE_enum("mode", "train", ["train", "export"],
                  "train: train (resuming if possible) and export at the end; export: only write the artifact "
                  "from the best/last checkpoint in --workdir.")
flags.DEFINE_string("export_dir", None, "Export destination (default: config.export.dir or WORKDIR/artifact).")
flags.DEFINE_string("coordinator_address", None, "jax.distributed coordinator host:port (multi-process runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes (-1: let jax.distributed detect the cluster).")
flags.DEFINE_integer("process_id", None, "Index of this process.")
flags.DEFINE_string("cpu_collectives", "gloo", "CPU collectives implementation for multi-process CPU runs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO through absl
    logging.getLogger("lic_jax").setLevel(logging.INFO)
    from lic_jax.train import jax_setup, parallel

    jax_setup.configure_jax()  # process-wide JAX settings belong to the entry point
    parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                                    FLAGS.cpu_collectives)
    from lic_jax.train.export import export_from_workdir
    from lic_jax.train.loop import NonFiniteError, train_and_evaluate

    if FLAGS.mode == "export":
        path = export_from_workdir(FLAGS.config, FLAGS.workdir, FLAGS.export_dir)
        print(path)
        return
    try:
        res = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except NonFiniteError as e:
        print(f"train.py: stopped: {e}", file=sys.stderr)
        sys.exit(3)
    if res.artifact:
        print(f"artifact: {res.artifact}")


if __name__ == "__main__":
    app.run(main)
