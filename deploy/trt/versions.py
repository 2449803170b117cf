"""Import TensorRT and decide, from its parsed version, what the installed release can do.

Version facts (checked against the real 10.16.1.11 and 11.4.0.106 bindings by
tests/trt/test_bindings_api.py):
TensorRT 11 removed the INT8 calibrators, `BuilderFlag.INT8/FP16` and
`IBuilderConfig.int8_calibrator`; precision comes from the ONNX file (FP16 weights,
Q/DQ nodes) and the network is always strongly typed. TensorRT before 10 lacks the
name-based I/O API (`num_io_tensors`, `set_tensor_address`, `execute_async_v3`) this
package runs on, so it is refused on import.

Versions are parsed here rather than with `packaging`: the device side must run with
numpy, tensorrt and pycuda alone (JetPack's Python has no `packaging`), and TensorRT's
version strings are plain release tuples ("10.3.0", "10.16.1.11", "11.4.0.106"), with at
most a pre-release ("10.0.0b6"), a post-release ("8.6.1.post1") or a local label.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from types import ModuleType

from ..errors import ToolMissingError

SUPPORTED_MAJORS = (10, 11)
_PRE_RANK = {"a": 0, "b": 1, "rc": 2}
_FINAL = 3  # a release sorts after its pre-releases
_SYNTAX = re.compile(r"v?(\d+(?:\.\d+)*)(?:[._-]?(a|b|rc)(\d+))?(?:[._-]?post(\d+))?(?:\+([A-Za-z0-9.]+))?")


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class TrtVersion:
    """A parsed version. Equal and ordered as PEP 440 orders these forms: trailing zero
    components do not matter ("10.3" == "10.3.0"), 10.0.0b6 < 10.0.0 < 10.0.0.post1."""

    text: str
    release: tuple[int, ...]
    pre: tuple[int, int] | None = None  # (rank of a/b/rc, number)
    post: int | None = None
    local: str = ""

    @property
    def major(self) -> int:
        return self.release[0]

    @property
    def minor(self) -> int:
        return self.release[1] if len(self.release) > 1 else 0

    @property
    def patch(self) -> int:
        return self.release[2] if len(self.release) > 2 else 0

    def _key(self) -> tuple:
        release = self.release
        while len(release) > 1 and release[-1] == 0:
            release = release[:-1]
        return (release, self.pre or (_FINAL, 0), -1 if self.post is None else self.post, self.local)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrtVersion) and self._key() == other._key()

    def __lt__(self, other: "TrtVersion") -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.text


def parse_release(text: str) -> TrtVersion:
    """"10.16.1.11" -> TrtVersion; ValueError for anything that is not such a version."""
    m = _SYNTAX.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a version: {text!r} (expected MAJOR.MINOR.PATCH[.BUILD])")
    release, pre, pre_n, post, local = m.groups()
    return TrtVersion(text.strip(), tuple(int(p) for p in release.split(".")),
                      (_PRE_RANK[pre], int(pre_n)) if pre else None, int(post) if post else None, local or "")


def parse_version(version: str | TrtVersion | ModuleType) -> TrtVersion:
    """A TensorRT version from a string ("10.3.0.30"), a TrtVersion, or the module itself."""
    if isinstance(version, TrtVersion):
        return version
    text = getattr(version, "__version__", version)
    try:
        return parse_release(str(text))
    except ValueError:
        raise ToolMissingError(f"cannot parse the TensorRT version {text!r}; reinstall TensorRT") from None


def check_supported(version: str | TrtVersion | ModuleType) -> TrtVersion:
    """The parsed version, or ToolMissingError for a TensorRT this package cannot drive."""
    parsed = parse_version(version)
    if parsed.major < SUPPORTED_MAJORS[0]:
        raise ToolMissingError(
            f"TensorRT {parsed} found; trtdeploy supports TensorRT {' and '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}. "
            "On a Jetson, JetPack 6.0 ships TensorRT 8.6.2: upgrade to JetPack 6.1 or later (TensorRT 10.3); "
            "elsewhere `pip install tensorrt`"
        )
    return parsed


def import_tensorrt() -> ModuleType:
    """The `tensorrt` module of a supported release, or ToolMissingError saying what to install."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:  # OSError: bindings present, libnvinfer.so missing
        raise ToolMissingError(
            f"TensorRT is not importable ({type(e).__name__}: {e}): install it from JetPack or "
            "`pip install tensorrt`"
        ) from None
    check_supported(trt)
    return trt


def supports_implicit_int8(version: str | TrtVersion | ModuleType) -> bool:
    """BuilderFlag.INT8 with an IInt8EntropyCalibrator2 exists up to TensorRT 10."""
    return parse_version(version).major <= 10
