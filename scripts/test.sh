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
# two pytest workers (pytest-xdist), one test file each at a time: on the 2-core CI machine this
# cuts the suite from ~75 to ~55 min because XLA compiles on one thread. LIC_TEST_WORKERS=0: serial.
workers=(-n "${LIC_TEST_WORKERS:-2}" --dist loadfile)
[[ ${LIC_TEST_WORKERS:-2} == 0 ]] && workers=()
echo "== tests in .venv (modern JAX)"
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=40 "${workers[@]}" "${marks[@]}" tests --ignore=tests/tfc "$@"
echo "== tests in .venv-tfc (tensorflow-compression 2.14.1)"
.venv-tfc/bin/python -m pytest -q -p no:cacheprovider --durations=10 "${marks[@]}" tests/tfc "$@"
