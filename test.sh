#!/usr/bin/env bash
# Set up (pinned packages, TensorRT bindings for the API check, Chromium) and run the tests.
# Extra arguments go to pytest, e.g. ./test.sh -m "not slow" or ./test.sh -m gpu
set -euo pipefail
cd "$(dirname "$0")"
tools/setup.sh --test
exec .venv/bin/python -m pytest -q -ra "$@"
