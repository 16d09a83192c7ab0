#!/usr/bin/env bash
# Create (or refresh) the virtual environments lic_jax is used and tested in.
#   .venv      Python 3.11: the modern JAX stack (lic_jax + samples/plot/train/data extras)
#              [test] adds pytest and the peers of the parity tests: torch 2.13 CPU + CompressAI
#   .venv-tfc  Python 3.11: lic_jax[tfc] = tensorflow-compression 2.14.1 with its verified pins
# Usage: scripts/setup_envs.sh base|test|tfc|all   (all = test + tfc). An environment is only
# rebuilt when pyproject.toml or this script changed since it was built.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
what=${1:-all}
stamp() { cat pyproject.toml scripts/setup_envs.sh | sha256sum | cut -c1-16; }
quiet() { "$@" 2>&1 | grep -vE "^WARNING: Location|is ignored: it is neither|^\[notice\]" || true; }
fresh() { [[ -x "$1/bin/python" && -f "$1/$2" && "$(cat "$1/$2")" == "$(stamp)" ]]; }

base() {
  fresh .venv .stamp_base && return 0
  echo "== setting up .venv (lic_jax with the modern JAX stack)"
  rm -rf .venv && $PY -m venv .venv
  quiet .venv/bin/pip install -q --upgrade pip
  quiet .venv/bin/pip install -q -e ".[samples,plot,train,data]"
  .venv/bin/python -c "import lic_jax, jax; print('  jax', jax.__version__, 'on', jax.default_backend())"
  stamp > .venv/.stamp_base
}

peers() {
  base
  fresh .venv .stamp_test && return 0
  echo "== adding test tools and the CompressAI peer to .venv"
  quiet .venv/bin/pip install -q -e ".[samples,plot,train,data,test]"
  # torch 2.13.0 CPU comes from the machine's local wheel. compressai is installed without its
  # dependencies because they pull torchvision, whose PyPI wheel is a CUDA build that cannot load
  # beside CPU torch; tests/compressai_compat.py explains the stand-in.
  quiet .venv/bin/pip install -q "torch==2.13.0"
  quiet .venv/bin/pip install -q einops pandas pybind11 torch-geometric
  quiet .venv/bin/pip install -q --no-deps "compressai==1.2.8" "pytorch-msssim==1.0.0"
  .venv/bin/python -c "import torch; print('  torch', torch.__version__)"
  stamp > .venv/.stamp_test
}

tfc() {
  fresh .venv-tfc .stamp_tfc && return 0
  echo "== setting up .venv-tfc (lic_jax[tfc]: tensorflow-compression 2.14.1)"
  rm -rf .venv-tfc && $PY -m venv .venv-tfc
  quiet .venv-tfc/bin/pip install -q --upgrade pip
  quiet .venv-tfc/bin/pip install -q -e ".[test,tfc]"
  .venv-tfc/bin/python -c "import tensorflow_compression, jax, numpy; print('  jax', jax.__version__, 'numpy', numpy.__version__)" 2>&1 | grep -v "TF-TRT\|cuda\|TensorRT" || true
  stamp > .venv-tfc/.stamp_tfc
}

case $what in
  base) base ;;
  test) peers ;;
  tfc) tfc ;;
  all) peers; tfc ;;
  *) echo "usage: $0 base|test|tfc|all" >&2; exit 2 ;;
esac
