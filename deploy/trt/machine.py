"""The GPU facts the device side records: `trtdeploy bench` and `profile` JSON, `doctor`.

deploy/env.py holds the machine's facts (CPU, Python, tool versions) and stays light; here the
GPU is read through pycuda (`Device` attributes, `get_driver_version`) into its `GpuDevice`.
A value the driver does not give (clock rates on some drivers) is left out rather than guessed.
"""
from __future__ import annotations

import dataclasses
from types import ModuleType

from ..env import GpuDevice, MachineInfo, machine_info
from .cuda import gpu_info


def driver_version(cuda: ModuleType) -> str:
    version = int(cuda.get_driver_version())  # 12080 -> "12.8", as nvidia-smi's "CUDA Version"
    return f"{version // 1000}.{version % 1000 // 10}"


def gpu_device(cuda: ModuleType, device: int = 0) -> GpuDevice:
    """Name, compute capability, memory, CUDA driver version and, where readable, clocks."""
    info = gpu_info(cuda, device)
    dev = cuda.Device(device)
    clocks: dict[str, int] = {}
    try:
        clocks["clock_mhz"] = int(dev.get_attribute(cuda.device_attribute.CLOCK_RATE)) // 1000  # kHz
        clocks["memory_clock_mhz"] = int(dev.get_attribute(cuda.device_attribute.MEMORY_CLOCK_RATE)) // 1000
    except (AttributeError, cuda.Error):
        pass  # not every driver reports clocks (CUDA 13 deprecates these attributes)
    return GpuDevice(device, info.name, info.compute_capability, int(dev.total_memory()) // (1 << 20),
                     driver_version(cuda), **clocks)


def integrated_gpu(cuda: ModuleType, device: int = 0) -> bool | None:
    """Whether `device` is an integrated GPU sharing memory with the CPU: on the CUDA devices
    TensorRT supports, a Jetson (CU_DEVICE_ATTRIBUTE_INTEGRATED); None when the driver does not say."""
    try:
        return bool(cuda.Device(device).get_attribute(cuda.device_attribute.INTEGRATED))
    except (AttributeError, cuda.Error):
        return None


def device_machine(cuda: ModuleType, trt: ModuleType, device: int = 0) -> MachineInfo:
    """deploy.env.machine_info() with the GPU, and the TensorRT that ran as the tools' tensorrt
    (JetPack's TensorRT has no package metadata; a pip one could differ from what loaded)."""
    info = machine_info()
    return dataclasses.replace(info, gpu=gpu_device(cuda, device),
                               tools={**info.tools, "tensorrt": str(trt.__version__)})
