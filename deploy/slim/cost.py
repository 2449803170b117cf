"""What a spec may ask for: bounded by what can be built here, from the spec alone.

Before anything is built (and before TensorFlow is imported) each family counts its net's
parameters and the activations of one image, layer by layer (`Tally`), and a spec beyond
either bound is refused with one line each:

- Parameters. `model.onnx` is one protobuf, which cannot exceed 2 GiB (float32 weights: 536M
  parameters), and exporting holds the weights many times over: vgg_16's 138M parameters (553
  MB) took about 11 GB (README "Models"), 20x the weights, most of it in tf2onnx's graph
  freezing. So 80 bytes per parameter must fit in the machine's memory.
- Activations at batch 1: every layer's output for one image, 4 bytes a value, must fit in the
  machine's memory (the statistics pass of `calibrate` holds every activation of a batch; the
  reference pass of `export` every layer of its images).
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

from .spec_checks import Problems

FLOAT_BYTES = 4
EXPORT_BYTES_PER_PARAMETER = 20 * FLOAT_BYTES  # vgg_16: ~11 GB for 553 MB of weights
PROTOBUF_LIMIT_BYTES = 2 ** 31  # protobuf's hard limit on one serialized message (model.onnx)


@functools.lru_cache(maxsize=1)
def machine_memory_bytes() -> int:
    """Physical memory, or the container's limit (cgroup v2, then v1) where that is lower (read once:
    every NetSpec checks its cost against it)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if value.isdigit():
            total = min(total, int(value))
    return total


def max_parameters(memory: int | None = None) -> int:
    memory = machine_memory_bytes() if memory is None else memory
    return min(PROTOBUF_LIMIT_BYTES // FLOAT_BYTES, memory // EXPORT_BYTES_PER_PARAMETER)


def _gb(n: float) -> str:
    """Bytes for people: 25.3 GB, 6.08 TB, 2.79e+05 TB."""
    return f"{n / 1e9:.3g} GB" if n < 1e12 else f"{n / 1e12:.3g} TB"


def parameters_problem(what: str, parameters: float, fix: str, memory: int | None = None,
                       at_least: bool = False) -> str | None:
    """The line refusing `parameters` (None when they can be built); `what` says whose they are."""
    memory = machine_memory_bytes() if memory is None else memory
    if parameters <= max_parameters(memory):
        return None
    weights = parameters * FLOAT_BYTES
    if weights > PROTOBUF_LIMIT_BYTES:
        why = "more than the 2 GiB a model.onnx protobuf can hold"
    else:
        why = (f"exporting needs about {EXPORT_BYTES_PER_PARAMETER // FLOAT_BYTES}x that "
               f"({_gb(parameters * EXPORT_BYTES_PER_PARAMETER)}) and this machine has {_gb(memory)} of memory")
    count = f"{'at least ' if at_least else ''}{parameters:.3g} parameters"
    return f"{what}: {count} ({_gb(weights)} of float32 weights), {why}; {fix}"


@dataclass
class Tally:
    """Parameters and activation values of a net, walked layer by layer (NHWC, batch 1)."""

    height: int
    width: int
    channels: int = 3
    parameters: int = 0
    activations: int = 0

    def __post_init__(self) -> None:
        self.activations += self.height * self.width * self.channels

    def _out(self, size: int, kernel: int, stride: int, rate: int, padding: str) -> int:
        if padding == "SAME":
            return math.ceil(size / stride)
        return max(0, (size - (kernel - 1) * rate - 1) // stride + 1)

    def layer(self, depth: int, kernel: tuple[int, int] = (1, 1), stride: int = 1, rate: int = 1,
              padding: str = "SAME", weights_per_output: int | None = None, extra_params: int = 0) -> None:
        """A layer that maps the current map to `depth` channels: conv (weights_per_output
        defaults to kh*kw*channels), pool (weights_per_output=0) or depthwise conv."""
        self.height = self._out(self.height, kernel[0], stride, rate, padding)
        self.width = self._out(self.width, kernel[1], stride, rate, padding)
        per_output = kernel[0] * kernel[1] * self.channels if weights_per_output is None else weights_per_output
        self.parameters += per_output * depth + extra_params
        self.channels = depth
        self.activations += self.height * self.width * depth

    def conv(self, depth: int, kernel: int | tuple[int, int] = 1, stride: int = 1, rate: int = 1,
             padding: str = "SAME", bn: bool = True, bias: bool = False, bn_scale: bool = True) -> None:
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        norm = depth * (3 + int(bn_scale)) if bn else 0  # beta (gamma), moving mean and variance
        self.layer(depth, k, stride, rate, padding, extra_params=norm + (depth if bias else 0))

    def pool(self, kernel: int | tuple[int, int], stride: int = 1, padding: str = "SAME") -> None:
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.layer(self.channels, k, stride, 1, padding, weights_per_output=0)

    def fork(self) -> "Tally":
        """A branch from the current map (its input is counted here already)."""
        branch = Tally(self.height, self.width, self.channels)
        branch.activations = 0
        return branch

    def join(self, branches: list["Tally"]) -> None:
        """Concatenate the branches' outputs along the channels (Inception's mixed blocks)."""
        self.parameters += sum(b.parameters for b in branches)
        self.activations += sum(b.activations for b in branches)
        self.height, self.width = branches[0].height, branches[0].width
        self.channels = sum(b.channels for b in branches)
        self.activations += self.height * self.width * self.channels

    def add(self, values: int) -> None:
        """A layer outside the chain (a shortcut, a residual sum, a branch) of `values` outputs."""
        self.activations += values


def check_cost(spec, parameters: int, activations: int, problems: Problems, fix: str) -> None:
    """One line per bound the spec exceeds (see the module docstring)."""
    memory = machine_memory_bytes()
    line = parameters_problem(spec.name, parameters, fix, memory)
    if line:
        problems.add(line)
    act_bytes = activations * FLOAT_BYTES
    if act_bytes > memory:
        problems.add(f"image_size {list(spec.image_size)}: the activations of one image take {_gb(act_bytes)} "
                     f"(every layer's output at batch 1), more than this machine's {_gb(memory)} of memory; "
                     "use a smaller image_size")
