"""The engine-inspection summary counts depthwise convolutions (MobileNet's), read from the
inspector's "Groups": TensorRT writes "OutMaps" and "Groups" for every convolution layer (the
fields NVIDIA's trt-engine-explorer reads, `trex/df_preprocessing.py` `layer_attributes`), and a
depthwise convolution is grouped once per input channel (ONNX Conv `group` = channels)."""
from __future__ import annotations

from deploy.trt.inspection import EngineLayer, parse_engine_information, summarize
from tests.trt import inspector_fixtures as fx

DW = "MobilenetV1/Conv2d_1_depthwise/depthwise"
PW = "MobilenetV1/Conv2d_1_pointwise/Conv2D"
DW2 = "MobilenetV1/Conv2d_2_depthwise/depthwise"


def depthwise(node: str, precision: str, channels: int = 32) -> dict:
    layer = fx.conv_layer(node, precision)
    layer.update(Groups=channels, OutMaps=channels, Weights={"Type": fx.WEIGHTS[precision], "Count": 9 * channels})
    layer["Inputs"] = [fx.tensor(f"{node}:input", precision, [8, channels, 56, 56])]
    layer["Outputs"] = [fx.tensor(f"{node}:0", precision, [8, channels, 56, 56])]
    return layer


def engine(dw2_precision: str) -> dict:
    return {"Layers": [depthwise(DW, "INT8"), fx.conv_layer(PW, "INT8"), depthwise(DW2, dw2_precision)],
            "Bindings": ["input", "logits"]}


def test_depthwise_convolutions_are_counted_in_the_summary():
    layers, _, detailed = parse_engine_information(engine("FP16"))
    assert [item.is_depthwise for item in layers] == [True, False, True]
    s = summarize(layers, "int8", [DW, PW, DW2], detailed=detailed)
    assert (s.depthwise, s.depthwise_in_target) == (2, 1)
    assert s.lines()[0] == (f"2 of 3 convolutions run in INT8 (1 of the 2 depthwise ones); these ONNX nodes ran "
                            f"FP16: {DW2} (FP16)")
    assert s.to_json()["depthwise"] == 2


def test_a_grouped_convolution_that_is_not_per_channel_is_not_depthwise():
    layer = fx.conv_layer(PW, "INT8")
    layer["Groups"] = 2  # input has 64 channels: two groups of 32 (ResNeXt-like), not depthwise
    (item,), _, _ = parse_engine_information({"Layers": [layer], "Bindings": []})
    assert item.groups == 2 and not item.is_depthwise


def test_resnet_summaries_say_nothing_of_depthwise_and_layers_files_keep_groups():
    s = summarize(parse_engine_information(fx.INT8_TRT10)[0], "int8", fx.CONVS)
    assert s.depthwise == 0 and "depthwise" not in s.lines()[0]
    layers, _, _ = parse_engine_information(engine("INT8"))
    again = [EngineLayer.from_json(item.to_json()) for item in layers]
    assert again == layers and summarize(again, "int8", [DW, PW, DW2]).depthwise_in_target == 2
