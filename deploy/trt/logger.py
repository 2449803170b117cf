"""A TensorRT logger that forwards to python logging."""
from __future__ import annotations

import collections
import logging
from types import ModuleType
from typing import Any


def make_logger(trt: ModuleType) -> Any:
    """A `trt.ILogger` forwarding to the "trtdeploy.tensorrt" logger; `.errors` keeps the
    last error messages for exception text (TensorRT reports most failures only there).

    The class is defined inside this function so the module imports without TensorRT."""

    class LoggingTrtLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: collections.deque[str] = collections.deque(maxlen=20)
            # TensorRT's INFO is a screenful per build: shown with -v only.
            self._levels = {
                trt.ILogger.Severity.INTERNAL_ERROR: logging.ERROR,
                trt.ILogger.Severity.ERROR: logging.ERROR,
                trt.ILogger.Severity.WARNING: logging.WARNING,
                trt.ILogger.Severity.INFO: logging.DEBUG,
                trt.ILogger.Severity.VERBOSE: logging.DEBUG,
            }

        def log(self, severity, msg):  # called by TensorRT, possibly from its own threads
            level = self._levels.get(severity, logging.INFO)
            if level >= logging.ERROR:
                self.errors.append(msg)
            logging.getLogger("trtdeploy.tensorrt").log(level, "TensorRT: %s", msg)

        def last_errors(self, n: int = 3) -> str:
            return "; ".join(list(self.errors)[-n:]) or "see the TensorRT log above"

    return LoggingTrtLogger()
