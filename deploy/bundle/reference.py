"""reference.npz: the sample inputs and TensorFlow's outputs for them, read by parity and by
the FP16 range checks (numpy, imported by the caller's need, not by deploy.bundle)."""
from __future__ import annotations

import zipfile
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BundleError
from .layout import REFERENCE_NPZ

if TYPE_CHECKING:
    from . import Bundle


def load_reference_npz(bundle: Bundle) -> dict[str, np.ndarray]:
    """reference.npz's arrays, checked against the manifest first."""
    path = bundle.file(REFERENCE_NPZ)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise BundleError(f"{path}: unreadable ({e}); re-run `trtdeploy export --out {bundle.root} --force`") from None
