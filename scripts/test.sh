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
# Two pytest workers (pytest-xdist, one test file each at a time) where the machine has >= 2 cores and
# >= 12 GB available; LIC_TEST_WORKERS=N overrides (0: serial). XLA compiles on one thread, so two
# workers are faster on 2 cores (the .venv suite: 6,253 s serial, 3,921 s with two, on this machine
# under different loads, 2026-12-02). Memory: conftest's _release_compiled_code drops the compiled
# executables after every test module; before it, a serial pytest grew to 11.9 GB. With it, the two
# workers and their subprocesses took <= 8.5 GB, the larger worker peaking at 4.7 GB.
if [[ -z ${LIC_TEST_WORKERS:-} ]]; then
  avail_kb=$(awk '/MemAvailable/{print $2}' /proc/meminfo 2>/dev/null || echo 0)
  if (( $(nproc) >= 2 && ${avail_kb:-0} >= 12000000 )); then LIC_TEST_WORKERS=2; else LIC_TEST_WORKERS=0; fi
fi
echo "== pytest workers: $LIC_TEST_WORKERS"
workers=(-n "$LIC_TEST_WORKERS" --dist loadfile)
[[ $LIC_TEST_WORKERS == 0 ]] && workers=()
echo "== tests in .venv (modern JAX)"
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=40 "${workers[@]}" "${marks[@]}" tests --ignore=tests/tfc "$@"
echo "== tests in .venv-tfc (tensorflow-compression 2.14.1)"
.venv-tfc/bin/python -m pytest -q -p no:cacheprovider --durations=10 "${marks[@]}" tests/tfc "$@"
