#!/usr/bin/env bash
# The README's main job: set up .venv (if needed) and compress / decompress bundled sample
# images with the shipped default model; results in out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_envs.sh base
exec .venv/bin/python scripts/demo.py --out "${1:-out/demo}"
