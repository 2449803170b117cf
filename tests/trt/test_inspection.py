"""Engine inspection without TensorRT: reading the inspector's JSON (fixtures written from
TensorRT's documented format, see inspector_fixtures.py), the summary `trtdeploy build` prints
(the parity report's section: tests/parity/test_engine_layers.py), the layers file, and
build_engine end to end on stand-ins."""
from __future__ import annotations

import json
import logging

import pytest

from deploy.cli import main
from deploy.errors import EngineError
from deploy.fsutil import sha256_bytes
from deploy.trt import build as build_module
from deploy.trt import cuda as cuda_module
from deploy.trt.build import BuildConfig, build_engine
from deploy.trt.inspection import (dtype_of, engine_information, layers_document, layers_path, load_summary,
                                   network_convolutions, onnx_nodes, parse_engine_information, summarize,
                                   summary_of)
from deploy.trt.sidecar import IOTensor, Sidecar, read_sidecar, sidecar_path

from . import inspector_fixtures as fx
from .fake_builder import FakeLayer, LayerType
from .fake_cuda import FakeCuda
from ..helpers import record
from .fake_engine import FakeEngine
from .fakes import make_fake_builder_trt


# --------------------------------------------------------------------------- reading the JSON
@pytest.mark.parametrize("text, dtype", [
    ("Row major linear FP32", "FP32"), ("Row major Int8 format", "INT8"),
    ("Thirty-two wide channel vectorized row major Int8 format", "INT8"),
    ("Channel major FP16 format where channel % 8 == 0", "FP16"), ("Channel major INT8 format where channel % 16 == 0",
                                                                   "INT8"),
    ("Row major linear BFloat16 format", "BF16"), ("Row major linear UInt8 format", "UINT8"),
    ("Row major linear Int32", "INT32"), ("Half", "FP16"), ("Float", "FP32"), ("Int8", "INT8"),
    ("Unknown format", None), ("", None), (None, None),
])
def test_dtype_from_the_format_words_trex_knows(text, dtype):
    assert dtype_of(text) == dtype


@pytest.mark.parametrize("metadata, nodes", [
    ("[ONNX Layer: a/Conv]\x1f[ONNX Layer: a/Relu]", ("a/Conv", "a/Relu")),
    ("[ONNX Layer: a/Conv]\x1e[ONNX Layer: b]", ("a/Conv", "b")),
    ("[ONNX Layer: a][ONNX Layer: b]", ("a", "b")),
    ("[ONNX Layer: w[0]/Conv]", ("w[0]/Conv",)),  # a bracket inside a node name
    # onnx-tensorrt's processMetadata: "[ONNX Layer: <name> | property ...]"
    ("[ONNX Layer: blk/Conv | Local Function: Block]\x1f[ONNX Layer: relu]", ("blk/Conv", "relu")),
    ("[ONNX Layer: a | doc | Local Function: F][ONNX Layer: b | Local Function: G]", ("a", "b")),
    ("", ()), (None, ()),
])
def test_onnx_nodes_from_metadata(metadata, nodes):
    assert onnx_nodes(metadata) == nodes


def test_trt10_layers_with_formats_precisions_and_fused_nodes():
    layers, io, detailed = parse_engine_information(json.dumps(fx.INT8_TRT10))
    assert detailed and io == ["input", "logits", "predictions"]
    by_name = {layer.name: layer for layer in layers}
    q = by_name["input_QuantizeLinear"]
    assert (q.type, q.precision, q.outputs[0].precision, q.onnx_nodes) == ("Reformat", "FP32", "INT8",
                                                                          ("input_QuantizeLinear",))
    conv1 = next(layer for layer in layers if fx.C1 in layer.onnx_nodes)
    assert conv1.is_convolution and conv1.precision == "INT8" and "resnet_v2_digits/pool1" in conv1.onnx_nodes
    assert conv1.inputs[0].format == "Thirty-two wide channel vectorized row major Int8 format"
    assert conv1.inputs[0].dimensions == (8, 64, 8, 8) and conv1.tactic.startswith("sm80_xmma_fprop")
    shortcut = next(layer for layer in layers if fx.C5 in layer.onnx_nodes)  # \x1e-separated metadata
    assert shortcut.precision == "FP16"
    reformat = by_name[f"Reformatting CopyNode for Input Tensor 0 to {fx.C6}"]
    assert reformat.onnx_nodes == () and not reformat.is_convolution
    assert sum(layer.is_convolution for layer in layers) == 6


def test_trt11_io_tensors_list_of_objects():
    _, io, detailed = parse_engine_information(fx.FP16_TRT11)
    assert detailed and io == ["input", "logits", "predictions"]


def test_names_only_engine_has_no_details():
    layers, _, detailed = parse_engine_information(fx.NAMES_ONLY)
    assert not detailed and [layer.name for layer in layers][0] == "input_QuantizeLinear"
    summary = summarize(layers, "int8", fx.CONVS, detailed=False)
    assert summary.lines() == ["layer details unavailable: the engine was built without detailed profiling "
                               "verbosity; rebuild it with `trtdeploy build` to see which precision each layer runs in"]


def test_type_and_layout_as_separate_fields_are_read_too():
    # NVIDIA's trt-perf-analysis validator accepts "Format" and "Datatype" keys beside "Format/Datatype".
    raw = {"Layers": [{"Name": "c", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
                       "Inputs": [{"Name": "x", "Dimensions": [1, 8], "Format": "Channel major", "Datatype": "Half"}],
                       "Outputs": [], "Metadata": "[ONNX Layer: c]"}]}
    (layer,), _, _ = parse_engine_information(raw)
    assert layer.precision == "FP16" and layer.inputs[0].format == "Channel major Half"


def test_engines_without_metadata_take_nodes_from_fused_names():
    raw = {"Layers": [{"Name": "conv1 + relu1", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
                       "Inputs": [fx.tensor("x", "INT8", [1, 3])], "Outputs": []}], "Bindings": ["x"]}
    (layer,), _, _ = parse_engine_information(raw)
    assert layer.onnx_nodes == ("conv1", "relu1")


@pytest.mark.parametrize("info", ["not json", "[]", '{"Layers": 3}', "{}"])
def test_malformed_engine_information_is_one_error(info):
    with pytest.raises(EngineError, match="not the JSON the inspector writes"):
        parse_engine_information(info)


# --------------------------------------------------------------------------- the summary
def summary_of_fixture(info, precision, convolutions=fx.CONVS, dla_core=None):
    layers, _, detailed = parse_engine_information(info, dla=dla_core is not None)
    return summarize(layers, precision, convolutions, dla_core, detailed)


def test_int8_engine_names_the_convolutions_that_ran_in_float():
    s = summary_of_fixture(fx.INT8_TRT10, "int8")
    assert s.lines() == [f"4 of 6 convolutions run in INT8; these ONNX nodes ran FP16/FP32: {fx.C5} (FP16), "
                         f"{fx.C6} (FP32)"]
    assert s.ok and s.by_precision == {"INT8": 4, "FP16": 1, "FP32": 1}
    assert s.off_target == ((fx.C5, "FP16"), (fx.C6, "FP32"))


def test_int8_engine_mostly_in_float_is_flagged():
    s = summary_of_fixture(fx.INT8_MOSTLY_FLOAT, "int8")
    assert not s.ok
    assert s.lines()[0].startswith("1 of 6 convolutions run in INT8; these ONNX nodes ran FP16/FP32: "
                                   f"{fx.C2} (FP16), {fx.C3} (FP16), {fx.C4} (FP32)")
    assert s.warnings == ("labelled int8, but only 1 of its 6 convolutions on the GPU run in INT8: TensorRT found no "
                          "INT8 scales for the others (re-run `trtdeploy calibrate`, and check which nodes its "
                          "--keep-fp32 kept in float)",)


def test_fp16_engine_with_an_fp32_convolution_is_flagged_naming_it():
    s = summary_of_fixture(fx.FP16_TRT11, "fp16")
    assert s.lines() == [f"5 of 6 convolutions run in FP16; these ONNX nodes ran FP32: {fx.C6} (FP32)",
                         f"warning: labelled fp16, but 1 convolution runs in FP32: {fx.C6} (expected only for nodes "
                         "`trtdeploy fp16` kept in FP32)"]
    assert not s.ok


def test_fp16_engine_all_in_fp16_and_fp32_engine_pass():
    all16 = fx.engine_information(dict.fromkeys(fx.CONVS, "FP16"))
    assert summary_of_fixture(all16, "fp16").lines() == ["6 of 6 convolutions run in FP16"]
    all32 = fx.engine_information(dict.fromkeys(fx.CONVS, "FP32"))
    assert summary_of_fixture(all32, "fp32").ok


def test_an_int8_convolution_in_a_myelin_subgraph_is_unknown_not_fp32():
    """The subgraph's boundary is FP32; that is no convolution's precision. C5's input shows FP32
    too, but its weights are Int8: it runs in INT8. Nothing here says "mostly not INT8"."""
    layers, _, _ = parse_engine_information(fx.MYELIN_INT8)
    (myelin,) = [layer for layer in layers if layer.type == "Myelin"]
    assert myelin.precision is None and fx.C1 in myelin.onnx_nodes
    c5 = next(layer for layer in layers if fx.C5 in layer.onnx_nodes)
    assert c5.inputs[0].precision == "FP32" and c5.precision == "INT8"
    s = summary_of_fixture(fx.MYELIN_INT8, "int8")
    assert s.ok and s.by_precision == {"unknown": 4, "INT8": 2} and s.off_target == ()
    assert s.unknown == (fx.C1, fx.C2, fx.C3, fx.C4)
    assert s.lines() == [f"2 of 6 convolutions run in INT8; 4 inside fused subgraphs whose precision the layer "
                         f"information does not give: {fx.C1}, {fx.C2}, {fx.C3}, {fx.C4}"]


def test_a_convolution_in_an_onnx_local_function_is_matched_by_its_node():
    info = fx.engine_information(dict.fromkeys(fx.CONVS, "FP16"))
    for layer in info["Layers"]:
        if "Metadata" in layer:
            layer["Metadata"] = layer["Metadata"].replace("]", " | Local Function: Unit]")
    s = summary_of_fixture(info, "fp16")
    assert s.lines() == ["6 of 6 convolutions run in FP16"] and not s.not_located
    trt = make_fake_builder_trt("10.16.1.11", FakeCuda(), {})
    layers = [FakeLayer.named(n, LayerType.CONVOLUTION, f"[ONNX Layer: {n} | Local Function: Unit]") for n in fx.CONVS]
    network = type("N", (), {"num_layers": len(layers), "get_layer": lambda self, i: layers[i]})()
    assert network_convolutions(trt, network) == fx.CONVS


def test_old_layers_files_are_read_again_from_tensorrts_json():
    """A layers file written by the earlier reading (first input's precision) is summarised with
    today's, from the engine information it keeps."""
    doc = layers_document(fx.MYELIN_INT8, plan="m.int8.plan", tensorrt="10.16.1.11", precision="int8",
                          mode="explicit", convolutions=fx.CONVS)
    for layer in doc["layers"]:
        layer["precision"] = layer["inputs"][0]["precision"] if layer["inputs"] else None  # the old rule
    assert summary_of(doc).ok
    del doc["engine_information"]  # without it, the stored reading is all there is
    assert not summary_of(doc).ok


def test_convolutions_the_layer_information_does_not_name_are_listed():
    s = summary_of_fixture(fx.INT8_TRT10, "int8", convolutions=fx.CONVS + ["hidden/Conv"])
    assert s.not_located == ("hidden/Conv",) and s.convolutions == 7
    assert s.lines()[0].endswith("; 1 not named in the layer information: hidden/Conv")


def test_without_the_network_list_the_engine_convolution_layers_count():
    s = summary_of_fixture(fx.INT8_TRT10, "int8", convolutions=None)
    assert s.convolutions == 6 and s.in_target == 4
    assert [p for _, p in s.off_target] == ["FP16", "FP32"]


def test_long_lists_are_shortened_in_the_printed_line():
    many = [f"n{i}/Conv" for i in range(12)]
    raw = {"Layers": [{"Name": n, "LayerType": "CaskConvolution", "ParameterType": "Convolution",
                       "Inputs": [fx.tensor("x", "FP16", [1])], "Outputs": [], "Metadata": f"[ONNX Layer: {n}]"}
                      for n in many]}
    s = summary_of_fixture(raw, "int8", convolutions=many)
    assert s.lines()[0].endswith("n7/Conv (FP16) and 4 more (see the .layers.json)")
    assert len(s.off_target) == 12


def test_dla_build_says_which_layers_fell_back_to_the_gpu():
    s = summary_of_fixture(fx.DLA_TRT10, "fp16", dla_core=0)
    assert s.lines() == [
        "5 of 6 convolutions run on DLA core 0, 1 in FP16 on the GPU",
        "DLA core 0: 1 layer on the DLA; these 3 fell back to the GPU: resnet_v2_digits/pool5, "
        f"{fx.C6}, resnet_v2_digits/predictions"]
    assert s.gpu_fallback == ("resnet_v2_digits/pool5", fx.C6, "resnet_v2_digits/predictions")


def test_dla_subgraph_recognised_by_its_foreign_node_name_but_not_myelin():
    dla, myelin = ({"Name": "{ForeignNode[a...b]}", "LayerType": t, "Inputs": [fx.tensor("x", "FP16", [1])],
                    "Outputs": [], "Metadata": "[ONNX Layer: a]"} for t in ("", "Myelin"))
    layers, _, _ = parse_engine_information({"Layers": [dla, myelin]}, dla=True)
    assert [layer.device for layer in layers] == ["DLA", "GPU"]
    layers, _, _ = parse_engine_information({"Layers": [dla]}, dla=False)  # a GPU build's ForeignNode is Myelin
    assert layers[0].device == "GPU"


# --------------------------------------------------------------------------- the layers file
def test_layers_file_round_trip_recomputes_the_summary():
    doc = layers_document(json.dumps(fx.INT8_TRT10), plan="m.int8.plan", tensorrt="10.16.1.11", precision="int8",
                          mode="explicit", convolutions=fx.CONVS)
    doc = json.loads(json.dumps(doc))
    assert doc["summary"]["lines"] == summary_of(doc).lines() and doc["summary"]["ok"] is True
    assert doc["engine_information"] == fx.INT8_TRT10  # TensorRT's own JSON, for trex and friends
    layer = next(d for d in doc["layers"] if d["name"] == "input_QuantizeLinear")
    assert layer["outputs"][0] == {"name": "input_quantized", "format": "Row major Int8 format", "precision": "INT8",
                                   "dimensions": [8, 3, 32, 32]}
    with pytest.raises(EngineError, match="not a layers file trtdeploy wrote .*format 7"):
        summary_of({**doc, "format": 7}, "x.layers.json")


# The manifest of a bundle whose engine is FakeEngine (x [-1, 3] -> y [-1, 2]).
MANIFEST = {"format": 1, "model": {"name": "m", "num_classes": 2},
            "inputs": [{"name": "x", "shape": [-1, 3], "dtype": "float32"}],
            "outputs": [{"name": "y", "shape": [-1, 2], "dtype": "float32"}], "preprocessing": {}}


def write_engine(tmp_path, precision="int8", layers_doc=None, **changes):
    plan = tmp_path / "engines" / f"m.{precision}.plan"
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_bytes(b"plan")
    fields = dict(plan=plan.name, plan_sha256=sha256_bytes(b"plan"), model="m", tensorrt="10.16.1.11",
                  gpu_name="Fake GPU", compute_capability="sm_87", precision=precision, mode="explicit",
                  version_compatible=False, hardware_compat=None, batch=(1, 4, 8),
                  io=(IOTensor("x", "input", "float32", (-1, 3), ((1, 3), (4, 3), (8, 3))),
                      IOTensor("y", "output", "float32", (-1, 2))), onnx="model.onnx", onnx_sha256="00" * 32)
    if layers_doc is not None:
        layers_path(plan).write_text(json.dumps(layers_doc))
        fields["layers"] = layers_path(plan).name
    fields.update(changes)
    sidecar_path(plan).write_text(json.dumps(Sidecar(**fields).to_json()))
    return plan


def test_load_summary_follows_the_sidecar(tmp_path):
    doc = layers_document(fx.FP16_TRT11, plan="m.fp16.plan", tensorrt="11.4.0.106", precision="fp16",
                          mode="explicit", convolutions=fx.CONVS)
    plan = write_engine(tmp_path, "fp16", doc)
    assert load_summary(plan).lines()[0] == f"5 of 6 convolutions run in FP16; these ONNX nodes ran FP32: {fx.C6} (FP32)"
    assert load_summary(write_engine(tmp_path / "old", "fp16")) is None  # built before layers files
    assert load_summary(tmp_path / "nowhere.plan") is None
    layers_path(plan).write_text("{broken")
    with pytest.raises(EngineError, match=r"m\.fp16\.layers\.json: unreadable layers file"):
        load_summary(plan)


# --------------------------------------------------------------------------- the TensorRT side
def test_engine_information_sets_opt_shapes_on_a_context_first():
    engine = FakeEngine(FakeCuda(), fx.INT8_TRT10)
    info = engine_information(make_fake_builder_trt("10.16.1.11", FakeCuda(), {}), engine, {"x": (4, 3)})
    assert info == fx.INT8_TRT10
    (inspector,) = engine.inspectors
    assert inspector.execution_context.shapes == {"x": (4, 3)}


def test_engine_information_that_is_not_json_is_an_engine_error():
    engine = FakeEngine(FakeCuda(), "garbage")
    with pytest.raises(EngineError, match="not JSON"):
        engine_information(make_fake_builder_trt("10.16.1.11", FakeCuda(), {}), engine, {})


def test_network_convolutions_by_onnx_node():
    trt = make_fake_builder_trt("10.16.1.11", FakeCuda(), {})
    layers = [FakeLayer.named("conv_a", LayerType.CONVOLUTION, "[ONNX Layer: a/Conv2D]"),
              FakeLayer.named("relu", LayerType.ACTIVATION, "[ONNX Layer: a/Relu]"),
              FakeLayer.named("b/Conv2D", LayerType.CONVOLUTION, "")]
    network = type("N", (), {"num_layers": 3, "get_layer": lambda self, i: layers[i]})()
    assert network_convolutions(trt, network) == ["a/Conv2D", "b/Conv2D"]


NETWORK = [(name, LayerType.CONVOLUTION, f"[ONNX Layer: {name}]") for name in fx.CONVS] + [
    ("relu", LayerType.ACTIVATION, "[ONNX Layer: relu]")]


@pytest.fixture
def fake_device(tmp_path, monkeypatch):
    """A bundle whose ONNX TensorRT "builds" into FakeEngine, with the stand-ins patched in."""
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps(MANIFEST))
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx"):
        (root / name).write_bytes(b"onnx")
    record(root, "model.onnx", "model.fp16.onnx", "model.int8.onnx")
    cuda = FakeCuda(capability=(8, 7))
    monkeypatch.setattr(cuda_module, "import_cuda", lambda: cuda)

    def install(information, version="10.16.1.11", dla_cores=0):
        trt = make_fake_builder_trt(version, cuda, information, dla_cores=dla_cores, network_layers=NETWORK)
        monkeypatch.setattr(build_module, "import_tensorrt", lambda: trt)
        return trt

    return root, install


def test_build_writes_the_layers_file_and_prints_the_summary(fake_device, capsys):
    root, install = fake_device
    trt = install(fx.INT8_TRT10)
    assert main(["build", str(root), "--precision", "int8", "--batch", "1", "4", "8"]) == 0
    out = capsys.readouterr().out.splitlines()
    plan = root / "engines" / "m.int8.plan"
    assert out == [str(plan), f"4 of 6 convolutions run in INT8; these ONNX nodes ran FP16/FP32: {fx.C5} (FP16), "
                              f"{fx.C6} (FP32)"]
    assert trt.built_with[1].profiling_verbosity is trt.ProfilingVerbosity.DETAILED
    sidecar = read_sidecar(plan)
    assert sidecar.layers == "m.int8.layers.json" and sidecar.dla_core is None
    doc = json.loads((root / "engines" / "m.int8.layers.json").read_text())
    assert doc["network_convolutions"] == fx.CONVS and doc["plan"] == "m.int8.plan" and doc["mode"] == "explicit"
    # formats and concrete dimensions: the inspector had a context with the opt shapes set (the
    # fake inspector, like TensorRT's, prints neither without one)
    quantize = next(layer for layer in doc["layers"] if layer["name"] == "input_QuantizeLinear")
    assert quantize["precision"] == "FP32" and quantize["outputs"][0]["precision"] == "INT8"
    assert quantize["outputs"][0]["dimensions"] == [8, 3, 32, 32]


def test_build_out_puts_the_layers_file_beside_the_plan(fake_device, tmp_path):
    from deploy.bundle import open_bundle

    root, install = fake_device
    install(fx.FP16_TRT11, version="11.4.0.106")
    out = tmp_path / "elsewhere" / "digits-fp16.plan"
    plan = build_engine(open_bundle(root), BuildConfig(precision="fp16", batch=(1, 4, 8), out=out))
    assert plan == out and (tmp_path / "elsewhere" / "digits-fp16.layers.json").is_file()
    assert load_summary(out).warnings  # the FP32 logits convolution is flagged


def test_unreadable_inspector_output_still_gives_an_engine(fake_device, caplog):
    from deploy.bundle import open_bundle

    root, install = fake_device
    install("not json")
    with caplog.at_level(logging.WARNING, logger="trtdeploy.trt"):
        plan = build_engine(open_bundle(root), BuildConfig(precision="fp32", batch=(1, 4, 8)))
    assert read_sidecar(plan).layers is None and not layers_path(plan).exists()
    assert "m.fp32.plan: no layer information" in caplog.text



def test_inspection_dla_and_doctor_names_reach_the_bindings_check():
    """test_bindings_api.py checks what api_surface collects: make sure these calls are collected."""
    from deploy.trt.api_surface import collect

    seen = {(u.module, ".".join(u.chain), u.kind) for u in collect()[0]}
    for anchor in [
        ("trt", "IBuilderConfig.profiling_verbosity", "write"), ("trt", "ProfilingVerbosity.DETAILED", "read"),
        ("trt", "ICudaEngine.create_engine_inspector", "call"), ("trt", "EngineInspector.execution_context", "write"),
        ("trt", "EngineInspector.get_engine_information", "call"), ("trt", "LayerInformationFormat.JSON", "read"),
        ("trt", "ILayer.metadata", "read"), ("trt", "LayerType.CONVOLUTION", "read"),
        ("trt", "Builder.num_DLA_cores", "read"), ("trt", "IBuilderConfig.default_device_type", "write"),
        ("trt", "IBuilderConfig.DLA_core", "write"), ("trt", "BuilderFlag.GPU_FALLBACK", "read"),
        ("trt", "Runtime.DLA_core", "write"), ("trt", "Runtime.num_DLA_cores", "read"),
        ("cuda", "get_driver_version", "call"), ("cuda", "Device.total_memory", "call"),
    ]:
        assert anchor in seen, anchor
