"""The stand-ins themselves: ../shared/gpu/runner_check.py (the runtime on a real GPU with an
emulated engine) imports fakes.py as a top-level module, with the project and tests/trt on
sys.path, for its enums and ILogger; and the TensorRT rules the fakes keep, shown on the fakes
alone (the code's use of them is tested where the code is)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .fake_engine import FakeContext, LayerInformationFormat

ROOT = Path(__file__).resolve().parents[2]


def test_fakes_import_as_a_top_level_module():
    code = (f"import sys\nsys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests' / 'trt')!r}]\nimport fakes\n"
            "trt = fakes.make_fake_trt('10.16.1.11', fakes.FakeCuda())\n"
            "print(trt.TensorIOMode.INPUT.name, trt.nptype(trt.DataType.FLOAT).__name__, fakes.ILogger.__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["INPUT", "float32", "ILogger"]


# --------------------------------------------------------------------------- the rules they keep
def test_the_fake_inspector_gives_formats_only_with_every_input_shape_set():
    """IEngineInspector::setExecutionContext: without a context holding every input shape, dynamic
    dimensions read -1 and no format is shown."""
    from .fake_cuda import FakeCuda
    from .fake_engine import FakeEngine
    from .inspector_fixtures import INT8_TRT10

    engine = FakeEngine(FakeCuda(), INT8_TRT10)
    bare = json.loads(engine.create_engine_inspector().get_engine_information(LayerInformationFormat.JSON))
    tensor = bare["Layers"][0]["Outputs"][0]
    assert "Format/Datatype" not in tensor and tensor["Dimensions"] == [-1, 3, 32, 32]
    inspector = engine.create_engine_inspector()
    context = engine.create_execution_context()
    inspector.execution_context = context  # no shape set yet: still nothing to tell
    assert json.loads(inspector.get_engine_information(LayerInformationFormat.JSON)) == bare
    context.set_input_shape("x", (8, 3))
    assert json.loads(inspector.get_engine_information(LayerInformationFormat.JSON)) == INT8_TRT10


def test_the_fake_context_reports_layer_times_as_enqueue_emits_profile_says():
    """IExecutionContext: with enqueue_emits_profile true (the default) the enqueue reports and
    report_to_profiler "returns true and does nothing"; with it false, report_to_profiler reports."""
    from .fake_cuda import FakeCuda
    from .fake_engine import FakeEngine

    cuda = FakeCuda()
    cuda.Device(0).retain_primary_context().push()
    seen = []
    for emits in (True, False):
        context = FakeEngine(cuda).create_execution_context()
        context.profiler = type("P", (), {"report_layer_time": lambda self, name, ms: seen.append((emits, name))})()
        context.enqueue_emits_profile = emits
        for name, nbytes in (("x", 12), ("y", 8)):
            context.set_tensor_address(name, int(cuda.mem_alloc(nbytes)))
        context.set_input_shape("x", (1, 3))
        assert context.execute_async_v3(0xCAFE) and context.report_to_profiler()
        assert context.reported_by == ["enqueue" if emits else "report_to_profiler"]
    assert len(seen) == 2 * len(FakeContext.layers)
