"""Fixtures of the calibration tests that run the default model end to end."""
from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(training digits, held-out test digits) as labelled image folders."""
    from deploy.digits import write_image_folder

    root = tmp_path_factory.mktemp("digits")
    return write_image_folder(root / "train", "train"), write_image_folder(root / "test", "test")


@pytest.fixture
def bundle(default_bundle_dir, tmp_path):
    """A private copy of the exported default bundle, so tests may change it."""
    from deploy.bundle import open_bundle

    return open_bundle(shutil.copytree(default_bundle_dir, tmp_path / "bundle"))
