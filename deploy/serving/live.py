"""The parity backends serving adds: a live Triton server, and DeepStream's resize-only preprocessing.

- `triton-PRECISION`: the server's model, judged with the thresholds of the precision it serves
  (the `trtdeploy_precision` parameter `trtdeploy triton` writes). A tensor model gets the
  same batches as every backend; a model taking image bytes (the ensemble) gets the encoded
  files the batches were made from, so the server's own preprocessing is part of what is judged.
- `deepstream-PRECISION`: ONNX Runtime on the bundle's ONNX of that precision, fed the images
  through the resize-only preprocessing nvinfer applies (`Preprocess.resize_only`): its
  difference from the reference is what DeepStream's lack of a central crop costs.

Both image-fed backends read the images of `--data` in the order the parity run batches them,
and check that the local preprocessing of each file equals the tensor of that row: a runner fed
the wrong file fails loudly instead of comparing the wrong answers.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from ..bundle import Bundle
from ..errors import DataError, UsageError
from ..runners.base import Runner, TensorSpec
from .configs import PRECISION_PARAMETER

IMAGE_SOURCES = ("an image folder", "a .txt list of images")


class ImageFedRunner(Runner):
    """A runner whose answers come from the encoded files behind each batch, in order."""

    def __init__(self, name: str, bundle: Bundle, paths: Sequence[Path],
                 answer: Callable[[list[bytes]], dict[str, np.ndarray]], start: Callable[[], None] = lambda: None,
                 stop: Callable[[], None] = lambda: None, max_batch: int | None = None):
        from ..data.preprocess import Preprocess

        self.name = name
        (self._input,) = bundle.inputs
        self._preprocess = Preprocess.from_json(bundle.preprocessing)
        self._paths = list(paths)
        self._next = 0
        self._answer, self._start, self._stop = answer, start, stop
        self.max_batch = max_batch  # a server's max_batch_size: parity splits bigger batches

    def activate(self) -> None:
        self._start()

    def close(self) -> None:
        self._stop()

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(self._input.name, tuple(None if d < 0 else d for d in self._input.shape),
                           np.dtype(self._input.dtype))]

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..data.preprocess import decode_image

        batch = feed[self._input.name]
        paths = self._paths[self._next:self._next + len(batch)]
        if len(paths) != len(batch):
            raise DataError(f"{self.name}: asked for {len(batch)} more images than the {len(self._paths)} of --data")
        data = [p.read_bytes() for p in paths]
        for path, raw, row in zip(paths, data, batch):
            if not np.array_equal(self._preprocess.apply(decode_image(raw, str(path))), row):
                raise DataError(f"{self.name}: {path} does not preprocess to the row parity sent; the image order "
                                "of --data changed during the run")
        self._next += len(batch)
        return self._answer(data)


def image_paths(bundle: Bundle, data: Path | None, num_images: int | None, seed: int, skip_bad: bool
                ) -> list[Path] | str:
    """The files of `data` in the order parity batches them, or why there are none."""
    from ..data.inputs import InputSet
    from ..data.preprocess import Preprocess

    if data is None or not (data.is_dir() or data.suffix.lower() == ".txt"):
        return f"it takes encoded images: give --data as {' or '.join(IMAGE_SOURCES)}"
    dataset = InputSet.from_path(data, input=bundle.inputs[0], preprocess=Preprocess.from_json(bundle.preprocessing),
                                 skip_bad=skip_bad, skip_option="--skip-bad", num=num_images, seed=seed)
    root = data.resolve() if data.is_dir() else data.resolve().parent
    return [root / s.path for s in dataset.samples]  # an absolute list entry stays absolute


def triton_backend(bundle: Bundle, url: str, model: str | None, paths: list[Path] | str
                   ) -> tuple[str, Callable[[Bundle], Runner]]:
    """The backend name (`triton-PRECISION`) and its factory; the server is asked now, once."""
    from ..parity.backends import Skip
    from ..runners.triton import TritonRunner

    probe = TritonRunner(url, model or bundle.model_name)
    with probe:
        precision = probe.parameters.get(PRECISION_PARAMETER)
        takes_bytes = probe.takes_bytes()
        max_batch = probe.max_batch
    if precision not in ("fp32", "fp16", "int8"):
        raise UsageError(f"--triton {url}: model {probe.model!r} has no {PRECISION_PARAMETER} parameter, so its "
                         "precision (and thresholds) are unknown; serve a repository written by `trtdeploy triton`")
    name = f"triton-{precision}"

    def make(_: Bundle):
        runner = TritonRunner(url, probe.model, name=name)
        if not takes_bytes:
            return runner
        if isinstance(paths, str):
            return Skip(f"{probe.model} {paths}")
        return ImageFedRunner(name, bundle, paths, runner.infer_images, runner.activate, runner.close, max_batch)
    return name, make


def deepstream_backend(bundle: Bundle, precision: str, paths: list[Path] | str) -> tuple[str, Callable]:
    """`deepstream-PRECISION`: ONNX Runtime on images preprocessed as nvinfer does (resize only)."""
    from ..data.preprocess import Preprocess, decode_image
    from ..parity.backends import Skip, installed

    name = f"deepstream-{precision}"

    def make(_: Bundle):
        if isinstance(paths, str):
            return Skip(f"DeepStream's preprocessing {paths}")
        if not installed("onnxruntime"):
            return Skip("ONNX Runtime is not installed here (`pip install onnxruntime`)")
        from ..runners.ort import OrtRunner

        ort = OrtRunner(bundle.onnx_path(precision), name=name)
        nvinfer = replace(Preprocess.from_json(bundle.preprocessing), resize_only=True)
        (tensor,) = bundle.inputs

        def answer(images: list[bytes]) -> dict[str, np.ndarray]:
            x = np.stack([nvinfer.apply(decode_image(b, "image")) for b in images]).astype(tensor.dtype)
            return ort.infer_any_batch({tensor.name: x})
        return ImageFedRunner(name, bundle, paths, answer, ort.activate, ort.close)
    return name, make


def live_backends(bundle: Bundle, *, triton: str | None, triton_model: str | None, deepstream: bool,
                  data: Path | None, num_images: int | None, seed: int, skip_bad: bool,
                  precision: str = "fp32") -> dict[str, Callable[[Bundle], Runner]]:
    """The live backends asked for, by name, as runner factories for `ParityRequest.extra_backends`."""
    if triton_model and not triton:
        raise UsageError("--triton-model names a model of the server given with --triton URL; add --triton")
    paths: list[Path] | str = image_paths(bundle, data, num_images, seed, skip_bad) if (triton or deepstream) else []
    added = []
    if triton:
        added.append(triton_backend(bundle, triton, triton_model, paths))
    if deepstream:
        added.append(deepstream_backend(bundle, precision, paths))
    return dict(added)
