#!/usr/bin/env bash
# Prepare .device_carry/ (git-ignored) for a lent GPU machine: wheels of the lic_jax dependencies the
# device image lacks (it has Python 3.12, jax, flax, optax, orbax and numpy, but no package registry)
# and the compact data subset. Then, with the `device` tool:
#   run(command="bash benchmarks/gpu_suite.sh", carry=[".device_carry"], timeout_s=590)
# and afterwards, at once: bash scripts/prepare_device_carry.sh --restore
#
# Since 2026-12-04 the repository alone (70 MiB: two 20 MiB float hyperprior artifacts, the bundled default and
# the first default, bmshj2018-hyperprior-q4) is over the device's 64 MiB. The suite needs neither of them nor the
# codec fixtures, so this script sets them aside for the transfer: it removes them from the index (the files stay
# in the working tree) and lists them in .git/info/exclude, so that they are neither tracked nor travel.
# `--restore` puts them back in the index and takes them out of the exclude file; until then `git status` shows
# them as deleted and a commit would delete them.
set -euo pipefail
cd "$(dirname "$0")/.."
STAY=(lic_jax/assets/models/default lic_jax/assets/models/bmshj2018-hyperprior-q4 tests/data/codec_fixtures)
MARK="# set aside by scripts/prepare_device_carry.sh"
exclude=$(git rev-parse --git-path info/exclude)
if [[ ${1-} == --restore ]]; then
  git reset -q -- "${STAY[@]}"
  if [[ -f $exclude ]]; then
    for p in "${STAY[@]}"; do grep -vxF "/$p/" "$exclude" > "$exclude.tmp" || true; mv "$exclude.tmp" "$exclude"; done
    grep -vxF "$MARK" "$exclude" > "$exclude.tmp" || true; mv "$exclude.tmp" "$exclude"
  fi
  git status --short -- "${STAY[@]}" | head -5
  echo "restored: ${STAY[*]}"
  exit 0
fi
if grep -qxF "$MARK" "$exclude" 2>/dev/null; then
  echo "already set aside: ${STAY[*]}"
else
  if [[ -n $(git status --porcelain --untracked-files=no -- "${STAY[@]}") ]]; then
    echo "error: uncommitted changes under ${STAY[*]}; commit them first" >&2; exit 1
  fi
  mkdir -p "$(dirname "$exclude")"
  echo "$MARK" >> "$exclude"
  for p in "${STAY[@]}"; do
    git rm -r -q --cached --ignore-unmatch -- "$p"
    echo "/$p/" >> "$exclude"
  done
  echo "set aside for the transfer (run '$0 --restore' after the device run): ${STAY[*]}"
fi
mkdir -p .device_carry/wheels
.venv/bin/pip download -q --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d .device_carry/wheels pillow "constriction>=0.5,<0.6" ml-collections PyYAML tqdm tensorboardX absl-py
# the data get what the repository and the wheels leave of the 64 MiB, less 1 MiB of margin: 4 Kodak images
# and 16 validation images first, then as many photo crops as fit (the repository grew from 23 to 46 MiB
# between 2026-11-30 and 2026-12-03: the bundled model's seed, ComCNN/ARCNN weights, codec fixtures)
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
wheels=$(du -sb .device_carry/wheels | cut -f1)
budget=$(python3 -c "print(round(64 - ($tracked + $wheels) / 2**20 - 1, 2))")
.venv/bin/python scripts/make_device_subset.py --dest .device_carry/data --max-mib "$budget" --kodak 4 --val 16 --max-photos 1100 --per-photo 2
n=$(ls .device_carry/data/train | wc -l)
(( n >= 300 )) || echo "warning: only $n training crops fit: a GPU run of thousands of steps will repeat them" >&2
du -sh .device_carry/* | sed 's/^/  /'
carry=$(du -sb .device_carry | cut -f1)
echo "travels: $(( (tracked + carry) / 1048576 )) MiB of 64 (repo $(( tracked / 1048576 )), carry $(( carry / 1048576 )))"
(( tracked + carry < 64 * 1048576 )) || { echo "error: over the 64 MiB limit" >&2; exit 1; }
