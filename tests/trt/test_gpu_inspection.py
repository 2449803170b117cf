"""On a machine with TensorRT and a GPU (`gpu` marker): the default bundle's INT8 and FP16
engines carry a layers file whose summary names what they run, and `trtdeploy doctor` finds the
device ready and the engines loadable (DLA builds: test_gpu_dla.py). TRTDEPLOY_TEST_BUNDLE=DIR
tests another bundle."""
from __future__ import annotations

import json

import pytest

from .test_gpu_engines import bundle  # noqa: F401  (module-scoped fixture: a scratch view of the bundle)

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_build_writes_layers_and_prints_what_runs(bundle, precision, capsys):  # noqa: F811
    from deploy.cli import main
    from deploy.trt.inspection import TARGET, load_summary
    from deploy.trt.sidecar import read_sidecar

    assert main(["build", str(bundle.root), "--precision", precision, "--batch", "1", "8", "16"]) == 0
    out = capsys.readouterr().out.splitlines()
    plan = bundle.engines_dir / f"{bundle.model_name}.{precision}.plan"
    assert out[0] == str(plan)
    sidecar = read_sidecar(plan)
    assert sidecar.layers == f"{bundle.model_name}.{precision}.layers.json"
    doc = json.loads((plan.parent / sidecar.layers).read_text())
    assert doc["detailed"] and doc["io_tensors"] and doc["network_convolutions"]
    assert all(layer["inputs"] or layer["outputs"] for layer in doc["layers"])
    summary = load_summary(plan)
    print(f"{precision}: " + " | ".join(summary.lines()))
    assert out[1:] == summary.lines()
    assert summary.convolutions == len(doc["network_convolutions"])
    assert summary.by_precision.get(TARGET[precision], 0) > 0
    assert not summary.not_located, "every convolution should be named in some layer's ONNX metadata"
    if precision == "int8":
        # the Q/DQ model is placed for TensorRT's fusions: its convolutions must run in INT8
        assert summary.ok, summary.lines()


def test_doctor_finds_the_device_ready_and_the_engines_loadable(bundle, capsys):  # noqa: F811
    from deploy.cli import main

    if not any(bundle.engines_dir.glob("*.plan")):
        assert main(["build", str(bundle.root), "--precision", "fp16", "--batch", "1", "8", "16"]) == 0
    capsys.readouterr()
    assert main(["doctor", str(bundle.root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    print(json.dumps({k: report[k] for k in ("tensorrt", "cuda", "gpus", "supports")}))
    assert report["ready"] and report["gpus"] and report["tensorrt"]["dla_cores"] is not None
    assert report["bundle"]["engines"] and all(e["loadable"] for e in report["bundle"]["engines"])
