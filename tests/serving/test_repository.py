"""`trtdeploy triton` without a server: every config checked field by field against the engine's
sidecar or the ONNX file, through protobuf's parser of Triton's ModelConfig; the refusals; re-runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.cli import main
from deploy.fsutil import sha256_bytes
from deploy.trt.sidecar import IOTensor, Sidecar, sidecar_path

from .test_pbtxt import parse


def fake_engine(root: Path, cc: str = "sm_87", batch=(1, 8, 32), model: str = "resnet_v2_digits",
                precision: str = "fp16", batch_axis: int = -1, layers: list | None = None, **changes) -> Path:
    """A plan file and the sidecar `trtdeploy build` would write beside it (the digits model's I/O)."""
    plan = root / f"{model}.{precision}.{cc}.plan"
    plan.parent.mkdir(parents=True, exist_ok=True)
    data = f"plan for {cc} {batch}".encode()
    plan.write_bytes(data)
    profile = tuple((b, 3, 32, 32) for b in batch)
    fields = dict(plan=plan.name, plan_sha256=sha256_bytes(data), model=model, tensorrt="10.16.1.11", gpu_name="GPU",
                  compute_capability=cc, precision=precision, mode="explicit", version_compatible=False,
                  hardware_compat=None, batch=batch,
                  io=(IOTensor("input", "input", "float32", (batch_axis, 3, 32, 32), profile),
                      IOTensor("logits", "output", "float32", (batch_axis, 10)),
                      IOTensor("predictions", "output", "float32", (batch_axis, 10))),
                  onnx="model.fp16.onnx", onnx_sha256="00" * 32)
    if layers is not None:
        (plan.with_suffix(".layers.json")).write_text(json.dumps({"format": 1, "layers": layers}))
        fields["layers"] = plan.with_suffix(".layers.json").name
    fields.update(changes)
    sidecar_path(plan).write_text(json.dumps(Sidecar(**fields).to_json()))
    return plan


def config_of(model_dir: Path):
    return parse((model_dir / "config.pbtxt").read_text())


def test_tensorrt_plan_config_is_the_sidecar_field_by_field(serving_bundle, tmp_path, capsys):
    plan = fake_engine(tmp_path / "engines")
    repo = tmp_path / "repo"
    assert main(["triton", str(serving_bundle), "--out", str(repo), "--engine", str(plan)]) == 0
    c = config_of(repo / "resnet_v2_digits")
    assert c.platform == "tensorrt_plan" and c.name == "resnet_v2_digits"
    assert c.max_batch_size == 32  # the profile's max: the most the TensorRT backend accepts
    assert [(t.name, t.data_type, list(t.dims)) for t in c.input] == [("input", 11, [3, 32, 32])]  # TYPE_FP32 = 11
    assert [(t.name, list(t.dims), t.label_filename) for t in c.output] == [
        ("logits", [10], "labels.txt"), ("predictions", [10], "labels.txt")]
    assert [(g.count, g.kind) for g in c.instance_group] == [(1, 1)]  # KIND_GPU
    assert list(c.dynamic_batching.preferred_batch_size) == [8]  # the profile's opt batch
    assert dict(c.cc_model_filenames) == {"8.7": "model.plan"}
    assert not c.optimization.cuda.graphs
    assert c.parameters["trtdeploy_precision"].string_value == "fp16"
    assert (repo / "resnet_v2_digits/1/model.plan").read_bytes() == plan.read_bytes()
    labels = (repo / "resnet_v2_digits/labels.txt").read_text().splitlines()
    assert labels == [f"class {i}" for i in range(10)]
    ensemble = config_of(repo / "resnet_v2_digits_ensemble")
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 32
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["resnet_v2_digits_preprocess",
                                                                          "resnet_v2_digits"]
    assert (repo / "resnet_v2_digits_ensemble/1").is_dir()  # an ensemble needs a version directory too
    out = capsys.readouterr().out
    assert "tensorrt_plan, 1 engine(s)" in out and "TensorRT 10.16.1.11" in out


def test_several_engines_are_keyed_by_compute_capability(serving_bundle, tmp_path):
    a = fake_engine(tmp_path / "a", cc="sm_87", batch=(1, 8, 32))
    b = fake_engine(tmp_path / "b", cc="sm_90", batch=(1, 16, 64))
    repo = tmp_path / "repo"
    assert main(["triton", str(serving_bundle), "--out", str(repo), "--engine", str(a), str(b)]) == 0
    c = config_of(repo / "resnet_v2_digits")
    assert dict(c.cc_model_filenames) == {"8.7": "model.sm_87.plan", "9.0": "model.sm_90.plan"}
    assert c.max_batch_size == 32  # every engine must take it
    assert list(c.dynamic_batching.preferred_batch_size) == [8, 16]
    assert (repo / "resnet_v2_digits/1/model.sm_90.plan").read_bytes() == b.read_bytes()


@pytest.mark.parametrize("engine, flags, message", [
    (dict(), ["--max-batch", "64"], "--max-batch 64 is above the profile's max batch 32"),
    (dict(batch_axis=4), [], "the batch axis of input, logits, predictions is fixed"),
    (dict(batch=(2, 8, 32)), [], "profile starts at batch 2"),
    (dict(model="vgg_16"), [], "an engine of 'vgg_16'"),
    (dict(), ["--precision", "int8"], "a fp16 engine, but --precision int8"),
    (dict(), ["--cuda-graphs"], "no layers file"),
    (dict(layers=[{"name": "loop", "type": "Recurrence"}]), ["--cuda-graphs"], "loops, conditionals"),
    (dict(), ["--preferred-batch", "48"], "--preferred-batch [48] above max_batch_size 32"),
    (dict(), ["--kind", "cpu"], "a TensorRT plan runs on a GPU"),
])
def test_an_engine_that_does_not_fit_is_one_error_line(serving_bundle, tmp_path, capsys, engine, flags, message):
    plan = fake_engine(tmp_path / "engines", **engine)
    repo = tmp_path / "repo"
    assert main(["triton", str(serving_bundle), "--out", str(repo), "--engine", str(plan), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not repo.exists()  # nothing half-written


def test_two_engines_for_one_gpu_are_refused(serving_bundle, tmp_path, capsys):
    a, b = fake_engine(tmp_path / "a"), fake_engine(tmp_path / "b", batch=(1, 4, 16))
    assert main(["triton", str(serving_bundle), "--out", str(tmp_path / "r"), "--engine", str(a), str(b)]) == 2
    assert "both built for sm_87" in capsys.readouterr().err


def test_cuda_graphs_where_the_layers_file_shows_nothing_against_them(serving_bundle, tmp_path):
    plan = fake_engine(tmp_path / "e", layers=[{"name": "conv", "type": "CaskConvolution",
                                                "parameter_type": "Convolution"}])
    repo = tmp_path / "repo"
    assert main(["triton", str(serving_bundle), "--out", str(repo), "--engine", str(plan), "--cuda-graphs"]) == 0
    assert config_of(repo / "resnet_v2_digits").optimization.cuda.graphs is True


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_onnxruntime_config_is_the_onnx_field_by_field(serving_bundle, tmp_path, precision):
    import onnx

    from deploy.bundle import ONNX_FILES

    repo = tmp_path / "repo"
    assert main(["triton", str(serving_bundle), "--out", str(repo), "--platform", "onnxruntime_onnx",
                 "--precision", precision, "--ort-tensorrt", "--max-batch", "16"]) == 0
    c = config_of(repo / "resnet_v2_digits")
    model = onnx.load(str(serving_bundle / ONNX_FILES[precision]))
    onnx_type = {onnx.TensorProto.FLOAT: 11}  # TYPE_FP32: FP16 and Q/DQ models keep float I/O

    def dims(v):
        return [d.dim_value for d in v.type.tensor_type.shape.dim[1:]]
    assert [(t.name, t.data_type, list(t.dims)) for t in c.input] == [
        (v.name, onnx_type[v.type.tensor_type.elem_type], dims(v)) for v in model.graph.input]
    assert [(t.name, t.data_type, list(t.dims)) for t in c.output] == [
        (v.name, onnx_type[v.type.tensor_type.elem_type], dims(v)) for v in model.graph.output]
    assert all(not v.type.tensor_type.shape.dim[0].HasField("dim_value") for v in model.graph.input)  # dynamic batch
    assert c.platform == "onnxruntime_onnx" and c.max_batch_size == 16 and c.instance_group[0].kind == 1
    (accelerator,) = c.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == ({} if precision == "fp32" else {"precision_mode": precision.upper()})
    assert (repo / "resnet_v2_digits/1/model.onnx").read_bytes() == (serving_bundle / ONNX_FILES[precision]).read_bytes()


def test_a_rerun_says_what_changed_and_leaves_other_models_alone(serving_bundle, tmp_path, capsys):
    repo = tmp_path / "repo"
    theirs = repo / "their_model" / "config.pbtxt"
    theirs.parent.mkdir(parents=True)
    theirs.write_text('name: "their_model"\n')
    args = ["triton", str(serving_bundle), "--out", str(repo), "--platform", "onnxruntime_onnx", "--kind", "cpu"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "unchanged: the repository already held exactly these files" in capsys.readouterr().out
    assert main(args + ["--max-batch", "16", "--labels", str(_labels(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "changed: resnet_v2_digits/config.pbtxt: - max_batch_size: 8; + max_batch_size: 16" in out
    assert "changed: resnet_v2_digits/labels.txt: - class 0; - class 1" in out
    assert theirs.read_text() == 'name: "their_model"\n'
    assert sorted(p.name for p in repo.iterdir()) == ["resnet_v2_digits", "resnet_v2_digits_ensemble",
                                                      "resnet_v2_digits_preprocess", "their_model"]
    assert not list(tmp_path.glob(".repo.*"))  # the staging directory is gone


def _labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"digit {i}\n" for i in range(10)))
    return path


def test_a_model_directory_it_did_not_write_is_never_replaced(serving_bundle, tmp_path, capsys):
    mine = tmp_path / "repo" / "resnet_v2_digits" / "1" / "model.onnx"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"the user's")
    assert main(["triton", str(serving_bundle), "--out", str(tmp_path / "repo"), "--platform", "python"]) == 2
    assert "was not written by `trtdeploy triton`" in capsys.readouterr().err
    assert mine.read_bytes() == b"the user's"
    assert not (tmp_path / "repo" / "resnet_v2_digits_preprocess").exists()


def test_python_models_carry_the_deploy_code_they_import(serving_bundle, tmp_path):
    repo = tmp_path / "repo"
    assert main(["triton", str(serving_bundle), "--out", str(repo), "--platform", "python"]) == 0
    lib = repo / "resnet_v2_digits_preprocess" / "1" / "trtdeploy_lib" / "deploy"
    assert sorted(p.relative_to(lib).as_posix() for p in lib.rglob("*.py")) == [
        "__init__.py", "data/__init__.py", "data/preprocess.py", "errors.py"]
    classifier = repo / "resnet_v2_digits" / "1"
    assert (classifier / "trtdeploy_lib/deploy/runners/ort.py").is_file()
    assert (classifier / "trtdeploy_lib/deploy/trt/runtime.py").is_file()
    c = config_of(repo / "resnet_v2_digits")
    assert c.backend == "python" and not c.platform and c.instance_group[0].kind == 2  # KIND_CPU
    assert {k: v.string_value for k, v in c.parameters.items()} == {
        "trtdeploy_precision": "fp32", "runner": "onnxruntime", "model_file": "model.onnx"}


def test_serving_modules_import_without_heavy_dependencies():
    from tests.test_light_imports import _run

    modules = ["deploy.serving.repository", "deploy.serving.deepstream", "deploy.serving.live", "deploy.serving.load",
               "deploy.runners.triton", "deploy.cli.triton", "deploy.cli.deepstream"]
    r = _run("import importlib\nfor m in %r: importlib.import_module(m)\nimport sys\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tritonclient', 'gevent')))" % modules)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr[-2000:]
