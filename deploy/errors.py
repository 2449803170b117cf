"""One exception family for everything a user can get wrong.

Every message says what is wrong, names the file or tensor, and says what to do.
The CLI prints `error: <message>` on one line and exits with `exit_code`.
"""
from __future__ import annotations


class DeployError(Exception):
    """Base class: a problem the user can fix. Never a bare traceback."""

    exit_code = 2

    @property
    def messages(self) -> tuple[str, ...]:
        """One line per mistake (the CLI prints each as `error: LINE`); most errors have one."""
        return (str(self),)


class UsageError(DeployError):
    """Wrong arguments, unknown names, an --out that exists."""


class BundleError(DeployError):
    """A bundle that is missing, incomplete or altered since it was written."""


class InputError(DeployError):
    """A feed with missing or extra names, wrong shape, dtype or layout."""


class DataError(DeployError):
    """Unreadable images, empty input sets (calibration, parity), arrays of the wrong shape."""


class CheckpointError(DeployError):
    """A checkpoint that does not match the model (missing, extra, misshaped)."""


class CalibrationError(DeployError):
    """Stale or mismatched calibration results, caches from another model."""


class ToolMissingError(DeployError):
    """An optional dependency (TensorFlow, ONNX Runtime, TensorRT, pycuda, a driver) is absent."""


class EngineError(DeployError):
    """An engine that cannot be built or loaded here."""


class WriteError(DeployError):
    """An output that cannot be written: a full disk, a read-only file system, no permission."""


class BundleBusyError(DeployError):
    """Another trtdeploy command holds the bundle longer than this one waits."""
