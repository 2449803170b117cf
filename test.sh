#!/usr/bin/env bash
# Set up (pinned packages, TensorRT bindings for the API check, Chromium) and run the tests.
# Extra arguments go to pytest, e.g. ./test.sh -m "not slow", ./test.sh -m gpu, or ./test.sh -n 0
# (one process instead of two workers: pytest-xdist, where a later -n wins)
set -euo pipefail
cd "$(dirname "$0")"
tools/setup.sh --test
exec .venv/bin/python -m pytest -q -ra -n 2 "$@"
