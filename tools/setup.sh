#!/usr/bin/env bash
# Make .venv with the pinned toolchain (idempotent: reinstalls only when the pins change).
#   tools/setup.sh          the package with its export extra (TensorFlow, tf2onnx, ONNX Runtime)
#   tools/setup.sh --test   also what the tests need: dev and test extras, the real TensorRT 10/11
#                           Python bindings for the API-conformance test, Chromium for the report
#                           test, a Triton server (nvidia-pytriton) and its python stub's environment
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.trtdeploy-installed
extras=export,dev
[ "${1:-}" = "--test" ] && extras=export,dev,test
want=$( (cat pyproject.toml requirements/constraints.txt requirements/triton-stub.txt; echo "$extras") | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned packages into .venv (a few minutes the first time)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c requirements/constraints.txt -e ".[$extras]"
  if [ "${1:-}" = "--test" ]; then
    # Only its tritonserver binary is used; its numpy<2 requirement would undo our numpy pin.
    .venv/bin/python -m pip install -q --no-deps -c requirements/constraints.txt nvidia-pytriton
    # The test server's python backend stub runs in its own environment (numpy<2: tests/serving/triton_server.py).
    rm -rf .venv/triton-stub
    "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')" -m venv .venv/triton-stub
    .venv/triton-stub/bin/python -m pip install -q --no-deps -r requirements/triton-stub.txt
  fi
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python tools/trt_standin.py --pycuda
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing Debian's chromium for the HTML report test" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "setup: chromium not installed; the rendered-report test will skip" >&2
    else
      echo "setup: chromium missing and not root; the rendered-report test will skip" >&2
    fi
  fi
fi
