#!/usr/bin/env bash
# The main job on the embedded default model: export, calibrate, FP16, engines where TensorRT
# and a GPU exist, and the parity report. Output in ./demo-out (or the directory given).
set -euo pipefail
cd "$(dirname "$0")"
tools/setup.sh
exec .venv/bin/trtdeploy demo --out "${1:-demo-out}"
