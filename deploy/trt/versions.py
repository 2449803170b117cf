"""Import TensorRT and decide, from its parsed version, what the installed release can do.

Version facts (checked against the 10.16.1.11 and 11.4.0.106 bindings, see TENSORRT.md):
TensorRT 11 removed the INT8 calibrators, `BuilderFlag.INT8/FP16` and
`IBuilderConfig.int8_calibrator`; precision comes from the ONNX file (FP16 weights,
Q/DQ nodes) and the network is always strongly typed.
"""
from __future__ import annotations

from types import ModuleType

from packaging.version import InvalidVersion, Version

from ..errors import ToolMissingError


def import_tensorrt() -> ModuleType:
    """The `tensorrt` module, or ToolMissingError saying how to install it."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:  # OSError: bindings present, libnvinfer.so missing
        raise ToolMissingError(
            f"TensorRT is not importable ({type(e).__name__}: {e}): install it from JetPack or "
            "`pip install tensorrt`"
        ) from None
    return trt


def parse_version(version: str | Version | ModuleType) -> Version:
    """A TensorRT version from a string ("10.3.0.30"), a Version, or the module itself."""
    if isinstance(version, Version):
        return version
    text = getattr(version, "__version__", version)
    try:
        return Version(str(text))
    except InvalidVersion:
        raise ToolMissingError(f"cannot parse the TensorRT version {text!r}; reinstall TensorRT") from None


def supports_implicit_int8(version: str | Version | ModuleType) -> bool:
    """BuilderFlag.INT8 with an IInt8EntropyCalibrator2 exists up to TensorRT 10."""
    return parse_version(version).major <= 10


def supports_weak_typing(version: str | Version | ModuleType) -> bool:
    """Networks without STRONGLY_TYPED (precision chosen by builder flags) exist up to 10."""
    return parse_version(version).major <= 10


def supports_version_compatible(version: str | Version | ModuleType) -> bool:
    """BuilderFlag.VERSION_COMPATIBLE appeared in TensorRT 8.6."""
    return parse_version(version) >= Version("8.6")


def supports_hardware_compat(version: str | Version | ModuleType) -> bool:
    """HardwareCompatibilityLevel.AMPERE_PLUS appeared in TensorRT 8.6."""
    return parse_version(version) >= Version("8.6")
