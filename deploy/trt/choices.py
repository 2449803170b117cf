"""The values `trtdeploy build` accepts, shared by `BuildConfig` and the argument parser.

Standard library only: `trtdeploy build --help` (and every other command, whose parsers are
all built on start-up) must not import the engine builder or anything it imports. The
precisions are the bundle's (deploy.bundle, standard library only too).
"""
from __future__ import annotations

from ..bundle import PRECISIONS

__all__ = ["PRECISIONS", "INT8_MODES", "HARDWARE_COMPAT_LEVELS", "DEFAULT_BATCH", "DEFAULT_DLA_BATCH",
           "DEFAULT_WORKSPACE_MIB"]
INT8_MODES = ("explicit", "implicit")
HARDWARE_COMPAT_LEVELS = ("ampere+",)
DEFAULT_BATCH = (1, 8, 32)
# The DLA has no dynamic shapes: a DLA engine runs one batch size, 1 unless --batch N says otherwise.
DEFAULT_DLA_BATCH = 1
DEFAULT_WORKSPACE_MIB = 4096
