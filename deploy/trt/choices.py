"""The values `trtdeploy build` accepts, shared by `BuildConfig` and the argument parser.

Standard library only: `trtdeploy build --help` (and every other command, whose parsers are
all built on start-up) must not import the engine builder or anything it imports.
"""
from __future__ import annotations

PRECISIONS = ("fp32", "fp16", "int8")
INT8_MODES = ("explicit", "implicit")
HARDWARE_COMPAT_LEVELS = ("ampere+",)
DEFAULT_BATCH = (1, 8, 32)
DEFAULT_WORKSPACE_MIB = 4096
