#!/usr/bin/env bash
# The whole test suite, both environments (this is what .ci/run runs).
#   scripts/test.sh            set up the environments if needed, then run every test
#   scripts/test.sh -k gdn     extra arguments go to both pytest runs
#   scripts/test.sh --extended also the checks marked 'extended' (multi-minute, multi-device)
set -euo pipefail
cd "$(dirname "$0")/.."
# --extended: also the multi-minute multi-device checks marked 'extended' (kept out of the 90-minute CI)
marks=(-m "not extended")
if [[ ${1:-} == --extended ]]; then marks=(); shift; fi
bash scripts/setup_envs.sh all
export LIC_JAX_REQUIRE_PEERS=1      # a missing peer (CompressAI, TFC) is a failure, not a skip
export PYTHONHASHSEED=0
echo "== tests in .venv (modern JAX)"
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=40 "${marks[@]}" tests --ignore=tests/tfc "$@"
echo "== tests in .venv-tfc (tensorflow-compression 2.14.1)"
.venv-tfc/bin/python -m pytest -q -p no:cacheprovider --durations=10 "${marks[@]}" tests/tfc "$@"
