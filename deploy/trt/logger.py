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
        self._phases: dict[str, tuple[str | None, int, float, int]] = {}  # name -> parent, steps, start, reported

    def _depth(self, name: str) -> int:
        depth, parent = 0, self._phases.get(name, (None,))[0]
        while parent is not None and depth < 32:
            depth += 1
            parent = self._phases.get(parent, (None,))[0]
        return depth

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        with self._lock:
            self._phase_start(phase_name, parent_phase, num_steps)

    def step_complete(self, phase_name: str, step: int) -> bool:
        with self._lock:
            self._step_complete(phase_name, step)
        return True  # False would cancel the build

    def phase_finish(self, phase_name: str) -> None:
        with self._lock:
            self._phase_finish(phase_name)

    def _phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        self._phases[phase_name] = (parent_phase or None, int(num_steps), self._clock(), 0)
        depth = self._depth(phase_name)
        self._log.log(logging.INFO if depth == 0 else logging.DEBUG, "TensorRT build: %s%s (%d steps)",
                      "  " * depth, phase_name, num_steps)

    def _step_complete(self, phase_name: str, step: int) -> None:
        entry = self._phases.get(phase_name)
        if entry is None:
            return
        parent, steps, start, reported = entry
        done = int(step) + 1
        tenth = done * 10 // steps if steps > 0 else 10
        if tenth > reported and steps >= 10:
            self._phases[phase_name] = (parent, steps, start, tenth)
            depth = self._depth(phase_name)
            self._log.log(logging.INFO if depth == 0 else logging.DEBUG,
                          "TensorRT build: %s%s: %d/%d steps, %.0f s", "  " * depth, phase_name, done, steps,
                          self._clock() - start)

    def _phase_finish(self, phase_name: str) -> None:
        entry = self._phases.get(phase_name)
        if entry is None:
            return
        depth = self._depth(phase_name)
        self._log.log(logging.INFO if depth == 0 else logging.DEBUG, "TensorRT build: %s%s done in %.1f s",
                      "  " * depth, phase_name, self._clock() - entry[2])
        del self._phases[phase_name]


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
