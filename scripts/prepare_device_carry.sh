#!/usr/bin/env bash
# Prepare .device_carry/ (git-ignored) for a lent GPU machine: wheels of the lic_jax dependencies the
# device image lacks (it has Python 3.12, jax, flax, optax, orbax and numpy, but no package registry)
# and the compact data subset. Then, with the `device` tool:
#   run(command="bash benchmarks/gpu_suite.sh", carry=[".device_carry"], timeout_s=590)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device_carry/wheels
.venv/bin/pip download -q --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d .device_carry/wheels pillow "constriction>=0.5,<0.6" ml-collections PyYAML tqdm tensorboardX absl-py
.venv/bin/python scripts/make_device_subset.py --dest .device_carry/data
du -sh .device_carry/* | sed 's/^/  /'
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carry=$(du -sb .device_carry | cut -f1)
echo "travels: $(( (tracked + carry) / 1048576 )) MiB of 64 (repo $(( tracked / 1048576 )), carry $(( carry / 1048576 )))"
(( tracked + carry < 64 * 1048576 )) || { echo "error: over the 64 MiB limit" >&2; exit 1; }
