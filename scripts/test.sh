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
# LIC_TEST_WORKERS=2: two pytest workers (pytest-xdist, one test file each at a time). XLA compiles
# on one thread, so this is ~1.4x faster on 2 cores (193 -> 141 s on two test files), but each
# worker's memory grows to ~10 GB over the suite: on 2026-12-02 one was OOM-killed on the 24 GB
# machine beside two niced trainings. Serial (0) is the default until its peak is bounded.
workers=(-n "${LIC_TEST_WORKERS:-0}" --dist loadfile)
[[ ${LIC_TEST_WORKERS:-0} == 0 ]] && workers=()
echo "== tests in .venv (modern JAX)"
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=40 "${workers[@]}" "${marks[@]}" tests --ignore=tests/tfc "$@"
echo "== tests in .venv-tfc (tensorflow-compression 2.14.1)"
.venv-tfc/bin/python -m pytest -q -p no:cacheprovider --durations=10 "${marks[@]}" tests/tfc "$@"
