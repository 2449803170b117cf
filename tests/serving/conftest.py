"""Fixtures of the serving tests: one calibrated demo bundle per session (FP32, FP16 and INT8
ONNX, built from the default bundle tests/conftest.py exports), its held-out digits as images,
and one real Triton server (tests/serving/triton_server.py) serving `trtdeploy triton
--platform python` repositories of all three precisions, stopped by its pid at the end."""
from __future__ import annotations

import shutil

import pytest

from . import triton_server

PRECISIONS = ("fp32", "fp16", "int8")


@pytest.fixture(scope="session")
def digits_images(tmp_path_factory):
    """(training digits, held-out digits) as labelled image folders."""
    from deploy.digits import write_image_folder

    root = tmp_path_factory.mktemp("digits")
    return write_image_folder(root / "train", "train"), write_image_folder(root / "heldout", "test")


@pytest.fixture(scope="session")
def serving_bundle(_pristine_default_bundle, digits_images, tmp_path_factory):
    """The default bundle with model.fp16.onnx and a calibrated model.int8.onnx (read-only: copy it to change it)."""
    from deploy.cli import main

    bundle = shutil.copytree(_pristine_default_bundle, tmp_path_factory.mktemp("serving") / "bundle")
    assert main(["fp16", str(bundle)]) == 0
    assert main(["calibrate", str(bundle), "--data", str(digits_images[0]), "--num-images", "128"]) == 0
    return bundle


@pytest.fixture(scope="session")
def triton_repository(serving_bundle, tmp_path_factory):
    """REPO with digits_fp32, digits_fp16, digits_int8 (python platform), each with its
    preprocessing model and ensemble; a short queue delay so concurrent requests meet in batches."""
    from deploy.cli import main

    repo = tmp_path_factory.mktemp("triton") / "repo"
    for p in PRECISIONS:
        assert main(["triton", str(serving_bundle), "--out", str(repo), "--platform", "python", "--precision", p,
                     "--name", f"digits_{p}", "--max-batch", "8", "--queue-delay-us", "2000"]) == 0
    return repo


@pytest.fixture(scope="session")
def triton(triton_repository, tmp_path_factory):
    """A live server on the repository (its url, pid and start-up time); skipped, saying why, where
    the server or its stub's Python environment is missing."""
    reason = triton_server.unavailable_reason()
    if reason:
        pytest.skip(f"no Triton server here: {reason}")
    server = triton_server.start(triton_repository, tmp_path_factory.mktemp("tritonserver"))
    print(f"\ntritonserver ready in {server.startup_s:.2f} s at {server.url} (pid {server.process.pid})")
    yield server
    assert server.stop() == 0, server.log.read_text()[-3000:]
