"""Small edits of ONNX graphs that several stages share (onnx imported lazily).

`with_outputs`: a model that also outputs some of its intermediate tensors, which is how
calibration statistics, FP16 range checks and per-layer parity read activations with ONNX
Runtime (the files on disk are not touched).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .errors import BundleError


def load_model(path: str | os.PathLike, rel: str | None = None, root: object = None):
    """The ModelProto at `path`; one line naming the file (and, for a bundle file `rel` of bundle
    `root`, the command that rewrites it) when it does not parse."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(os.fspath(path))
    except (DecodeError, ValueError, OSError) as e:
        if rel is not None:
            from .bundle.layout import remake_command

            fix = f"write it again with `{remake_command(rel, root)}`"
        else:
            fix = "give an ONNX file"
        raise BundleError(f"{Path(path)}: not a readable ONNX model ({type(e).__name__}: {e}); {fix}") from None


def with_outputs(model, tensors: Sequence[str]) -> bytes:
    """`model` (a ModelProto, left unchanged, a path or serialized bytes) serialized with `tensors` added as
    graph outputs, ready for an ONNX Runtime session.

    The added outputs carry no type or shape: ONNX Runtime takes them from the graph, so one
    helper serves FP32, FP16 and INT8 models alike. Tensors that already are graph outputs
    are not added twice.
    """
    import onnx

    if isinstance(model, bytes):
        out = onnx.load_from_string(model)
    elif isinstance(model, (str, os.PathLike)):
        out = onnx.load(os.fspath(model))
    else:
        out = onnx.ModelProto()
        out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    for name in dict.fromkeys(tensors):
        if name not in present:
            out.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return out.SerializeToString()
