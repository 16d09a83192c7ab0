#!/usr/bin/env bash
# Create (or refresh) the two virtual environments lic_jax is developed and tested in.
#   .venv      Python 3.11, modern JAX stack + test tools + the CompressAI peer (torch 2.13 CPU)
#   .venv-tfc  Python 3.11, tensorflow-compression 2.14.1 with its verified pins (lic_jax[tfc])
# Usage: scripts/setup_envs.sh [base|tfc|all]   (default: all). Re-runs are cheap: an env is only
# rebuilt when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
what=${1:-all}
stamp() { cat pyproject.toml scripts/setup_envs.sh | sha256sum | cut -c1-16; }
pipq() { "$@" 2>&1 | grep -vE "^WARNING: Location|is ignored: it is neither" || true; }

need() {  # need VENV -> 0 if (re)build needed
  [[ -x "$1/bin/python" && -f "$1/.lic_stamp" && "$(cat "$1/.lic_stamp")" == "$(stamp)" ]] && return 1 || return 0
}

if [[ $what == base || $what == all ]] && need .venv; then
  echo "== setting up .venv (base + test + CompressAI peer)"
  rm -rf .venv && $PY -m venv .venv
  pipq .venv/bin/pip install -q --upgrade pip
  pipq .venv/bin/pip install -q -e ".[test,data,plot,samples,train]"
  # CompressAI peer for the parity tests. torch 2.13.0 CPU comes from the machine's local wheel.
  # compressai is installed without its dependencies because they pull torchvision, whose PyPI
  # wheel is a CUDA build that cannot load beside CPU torch; tests/compressai_compat.py explains.
  pipq .venv/bin/pip install -q "torch==2.13.0"
  pipq .venv/bin/pip install -q einops pandas pybind11 torch-geometric
  pipq .venv/bin/pip install -q --no-deps "compressai==1.2.8" "pytorch-msssim==1.0.0"
  .venv/bin/python -c "import jax, flax, optax, orbax.checkpoint, constriction, torch; print('base env: jax', jax.__version__, 'torch', torch.__version__)"
  stamp > .venv/.lic_stamp
fi

if [[ $what == tfc || $what == all ]] && need .venv-tfc; then
  echo "== setting up .venv-tfc (lic_jax[tfc])"
  rm -rf .venv-tfc && $PY -m venv .venv-tfc
  pipq .venv-tfc/bin/pip install -q --upgrade pip
  pipq .venv-tfc/bin/pip install -q -e ".[test,tfc]"
  .venv-tfc/bin/python -c "import tensorflow_compression as tfc, jax, numpy; print('tfc env: tfc', tfc.__version__ if hasattr(tfc,'__version__') else '2.14.1', 'jax', jax.__version__, 'numpy', numpy.__version__)"
  stamp > .venv-tfc/.lic_stamp
fi
