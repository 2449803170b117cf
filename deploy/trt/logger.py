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


class BuildProgress:
    """What TensorRT's builder says about its phases, as log lines: each top-level phase when
    it starts and ends (with its time), every tenth of its steps in between; nested phases
    at DEBUG (shown with -v). TensorRT may call it from several internal threads: one lock
    guards the phase table."""

    def __init__(self, logger: logging.Logger | None = None, clock=None) -> None:
        import threading
        import time

        self._lock = threading.Lock()
        self._log = logger or logging.getLogger("trtdeploy.trt.build")
        self._clock = clock or time.perf_counter
        self._phases: dict[str, list] = {}  # name -> [depth, steps, start time, tenths reported]

    def _say(self, depth: int, fmt: str, *args) -> None:
        self._log.log(logging.INFO if depth == 0 else logging.DEBUG, "TensorRT build: %s" + fmt, "  " * depth, *args)

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        with self._lock:
            parent = self._phases.get(parent_phase) if parent_phase else None
            depth = parent[0] + 1 if parent else 0
            self._phases[phase_name] = [depth, int(num_steps), self._clock(), 0]
            self._say(depth, "%s (%d steps)", phase_name, num_steps)

    def step_complete(self, phase_name: str, step: int) -> bool:
        with self._lock:
            phase = self._phases.get(phase_name)
            if phase is not None and phase[1] >= 10:
                depth, steps, start, reported = phase
                done = int(step) + 1
                if done * 10 // steps > reported:
                    phase[3] = done * 10 // steps
                    self._say(depth, "%s: %d/%d steps, %.0f s", phase_name, done, steps, self._clock() - start)
        return True  # False would cancel the build

    def phase_finish(self, phase_name: str) -> None:
        with self._lock:
            phase = self._phases.pop(phase_name, None)
            if phase is not None:
                self._say(phase[0], "%s done in %.1f s", phase_name, self._clock() - phase[2])


def make_progress_monitor(trt: ModuleType, progress: BuildProgress | None = None) -> Any:
    """A `trt.IProgressMonitor` that hands every call to a `BuildProgress` (the class is
    defined here so the module imports without TensorRT). Keep a reference until the build
    returns: TensorRT does not own it."""
    state = progress or BuildProgress()

    class LoggingProgressMonitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.progress = state

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            return self.progress.step_complete(phase_name, step)

        def phase_finish(self, phase_name):
            self.progress.phase_finish(phase_name)

    return LoggingProgressMonitor()
