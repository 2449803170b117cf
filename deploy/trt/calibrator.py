"""The TensorRT <= 10 entropy calibrator for implicit INT8.

Two uses:
- serve the bundle's calibration/trt.cache (made on the workstation by `trtdeploy
  calibrate`): TensorRT then asks for no batches, so there is no GPU calibration pass.
  TensorRT ignores a cache whose header names another TensorRT version (and then asks for
  batches), but the scales do not depend on the version: the cache is served under the
  header of the TensorRT that runs, once it is shown to belong to this bundle;
- live calibration (`trtdeploy build --data DIR`): feed preprocessed batches from device memory
  and let TensorRT write its own cache.

The cache is validated before it is served, here in Python: TensorRT's own checks end in a
log line, and an exception raised inside a TensorRT callback does not reach the caller.
For the same reason errors in `get_batch` / `write_calibration_cache` are kept and raised
by `raise_pending()` after the build.

TensorRT 11 has no calibrators; `build.plan_network` refuses implicit INT8 there.
"""
from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from ..errors import CalibrationError, DataError
from ..fsutil import atomic_write_bytes, sha256_bytes
from .calibration_cache import ENTROPY_2, parse_cache, trt_version_code

log = logging.getLogger("trtdeploy.trt")


def _recalibrate(cache_path: Path) -> str:
    return f"re-run `trtdeploy calibrate {cache_path.parent.parent} --method entropy`"


def load_cache(cache_path: str | Path, expected_sha256: str | None,
               known_tensors: Iterable[str] | None = None, trt_version: str | None = None) -> bytes:
    """The cache's bytes, once they are shown to be an EntropyCalibration2 cache made for
    this bundle's model, with the header of TensorRT `trt_version` (when given). Raises
    CalibrationError otherwise.

    `known_tensors`: the network's activation tensors. Cached names outside it are reported
    (all of them: another model's cache), and so is how many of them have no scale."""
    path = Path(cache_path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CalibrationError(f"{path}: cannot read the calibration cache ({e.strerror}); {_recalibrate(path)}") from None
    try:
        cache = parse_cache(data, str(path))
    except CalibrationError:
        raise
    except ValueError as e:
        raise CalibrationError(f"{path}: not a TensorRT calibration cache ({e}); {_recalibrate(path)}") from None
    if cache.algorithm != ENTROPY_2:
        raise CalibrationError(
            f"{path}: the cache was made with another algorithm ({cache.algorithm}); the calibrator here is "
            f"{ENTROPY_2} and TensorRT would reject it: {_recalibrate(path)}"
        )
    if expected_sha256 is None:
        raise CalibrationError(
            f"{path}: not recorded in the bundle manifest, so nothing ties it to this model; {_recalibrate(path)}"
        )
    got = sha256_bytes(data)
    if got != expected_sha256:
        raise CalibrationError(
            f"{path}: stale cache: sha256 {got[:12]} is not the {expected_sha256[:12]} the manifest recorded "
            f"(another model or an older calibration); {_recalibrate(path)}"
        )
    if not cache.scales:
        raise CalibrationError(f"{path}: the cache holds no tensor scales; {_recalibrate(path)}")
    if known_tensors is not None:
        known = set(known_tensors)
        unknown = sorted(set(cache.scales) - known)
        if len(unknown) == len(cache.scales):
            raise CalibrationError(
                f"{path}: none of its {len(cache.scales)} tensors (e.g. {unknown[0]!r}) is in this network: the "
                f"cache belongs to another model; {_recalibrate(path)}"
            )
        if unknown:
            log.warning("%s: %d of %d cached tensors are not in the network (e.g. %r); TensorRT ignores them",
                        path, len(unknown), len(cache.scales), unknown[0])
        unscaled = sorted(known - set(cache.scales))
        log.info("%s: %d of the network's %d activation tensors have no scale%s; TensorRT keeps the layers around "
                 "them out of INT8", path, len(unscaled), len(known), f" (e.g. {unscaled[0]!r})" if unscaled else "")
    if trt_version is not None:
        header = f"TRT-{trt_version_code(trt_version)}-{ENTROPY_2}".encode()
        _, _, body = data.partition(b"\n")
        data = header + b"\n" + body
    log.info("%s: serving %d %s scales (header TRT-%d as written%s)", path, len(cache.scales), ENTROPY_2,
             cache.version, f", served as TensorRT {trt_version}'s" if trt_version else "")
    return data


def _refused(cache_path: Path, trt_version: str) -> CalibrationError:
    """What to say when TensorRT asks for batches while a cache is served: it asks only when
    it did not take the cache."""
    return CalibrationError(
        f"{cache_path}: TensorRT {trt_version} did not accept the served cache and asked for calibration batches "
        "(its log above says why); re-run `trtdeploy calibrate` for this model, or calibrate on this device "
        "with --data DIR"
    )


def full_batches(batches: Iterable[Any], batch_size: int) -> Iterator[Any]:
    """Batches of exactly `batch_size` (the calibration profile is fixed at that size);
    a short last batch is dropped and said so."""
    for batch in batches:
        arrays = batch.values() if isinstance(batch, Mapping) else [batch]
        n = {int(np.shape(a)[0]) for a in arrays}
        if n == {batch_size}:
            yield batch
        else:
            log.info("calibration: dropping a batch of %s (the calibration profile takes %d)", sorted(n), batch_size)


def feed_for(batch: Any, names: list[str]) -> dict[str, np.ndarray]:
    """Map a batch (an array for a one-input model, or a name -> array dict) to `names`."""
    if isinstance(batch, Mapping):
        missing = [n for n in names if n not in batch]
        if missing:
            raise DataError(f"calibration batch lacks inputs {missing}; it has {sorted(batch)}")
        return {n: np.ascontiguousarray(batch[n]) for n in names}
    if len(names) != 1:
        raise DataError(f"calibration batches are single arrays but the network has inputs {names}")
    return {names[0]: np.ascontiguousarray(batch)}


def make_calibrator(trt: ModuleType, cache_path: str | Path, batches: Iterable[Any] | None = None,
                    batch_size: int = 8, *, expected_sha256: str | None = None,
                    known_tensors: Iterable[str] | None = None, cuda: ModuleType | None = None) -> Any:
    """A `trt.IInt8EntropyCalibrator2`.

    Without `batches`: serves `cache_path` after `load_cache` validated it (raises now if
    it is stale or of another algorithm). With `batches`: live calibration from device
    copies of each batch; TensorRT's resulting cache is written to `cache_path` atomically.
    """
    cache_path = Path(cache_path)
    live = batches is not None
    served = None if live else load_cache(cache_path, expected_sha256, known_tensors, trt.__version__)
    if live and cuda is None:
        from .cuda import import_cuda
        cuda = import_cuda()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = full_batches(batches, batch_size) if live else None
            self._device: dict[str, Any] = {}
            self._error: BaseException | None = None
            self.batches_served = 0

        def get_batch_size(self):
            # Explicit-batch networks take the shape from the calibration profile; this
            # agrees with it.
            return batch_size

        def get_batch(self, names):
            if not live and self._error is None:
                self._error = _refused(cache_path, trt.__version__)
            if self._batches is None or self._error is not None:
                return None
            try:
                batch = next(self._batches, None)
                if batch is None:
                    return None
                pointers = []
                for name, array in feed_for(batch, list(names)).items():
                    if name not in self._device:
                        self._device[name] = cuda.mem_alloc(array.nbytes)
                    cuda.memcpy_htod(self._device[name], array)
                    pointers.append(int(self._device[name]))
                self.batches_served += 1
                return pointers
            except Exception as e:  # noqa: BLE001 - kept for raise_pending(); TensorRT would swallow it
                self._error = e
                return None

        def read_calibration_cache(self):
            return served

        def write_calibration_cache(self, cache):
            if not live:
                return  # serving our own cache: never overwrite it with TensorRT's copy
            try:
                atomic_write_bytes(cache_path, bytes(memoryview(cache)))
                log.info("wrote TensorRT's calibration cache %s", cache_path)
            except Exception as e:  # noqa: BLE001 - see get_batch
                self._error = e

        def raise_pending(self) -> None:
            """Raise, after the build, what went wrong inside TensorRT's callbacks."""
            if isinstance(self._error, (CalibrationError, DataError)):
                raise self._error
            if self._error is not None:
                raise CalibrationError(f"calibration failed: {type(self._error).__name__}: {self._error}")
            if live and self.batches_served == 0:
                raise DataError(f"no full calibration batch of {batch_size}: give more data or a smaller batch")

        def close(self) -> None:
            """Free the device copies (call with the CUDA context current)."""
            for allocation in self._device.values():
                allocation.free()
            self._device.clear()

    return EntropyCalibrator()
