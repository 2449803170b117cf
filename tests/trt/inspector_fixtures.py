"""Engine-inspector JSON of the shape TensorRT writes, for CPU tests (no TensorRT can run here).

Written from these sources, field by field:
- The engine inspector section of the TensorRT 10.16 developer guide ("Engine Inspector",
  inference-library/engine-tools.html): `get_engine_information(LayerInformationFormat.JSON)`,
  detailed only with `ProfilingVerbosity.DETAILED`, names only otherwise.
- Recorded engine graphs in NVIDIA/TensorRT `tools/experimental/trt-engine-explorer/examples`
  (e.g. `pytorch/resnet/A100/qat-residual-qgap/*.graph.json`) and trex's parser
  (`trex/parser.py`, `layer.py`, `activations.py`): {"Layers": [...], "Bindings": [names]},
  layers with "Name", "LayerType" ("Reformat", "CaskConvolution", "ConvActPool"),
  "ParameterType", "Inputs"/"Outputs" with "Name", "Location", "Dimensions",
  "Format/Datatype" ("Row major linear FP32", "Row major Int8 format", "Thirty-two wide channel
  vectorized row major Int8 format", "Channel major FP16 format where channel % 8 == 0"),
  "Weights"/"Bias" {"Type": "Int8"|"Half"|"Float", "Count"}, "TacticName", "TacticValue".
- "Metadata" (TensorRT 10): "[ONNX Layer: NAME]" entries separated by \\x1f (or \\x1e), as
  trex's `fix_unicode` and Polygraphy-era tools describe it.
- TensorRT 11 renamed "Bindings" to "I/O Tensors", a list of objects with "Name" (TENSORRT.md;
  tensor-naming code of 11.x-era tools reads `t["Name"]`).
- DLA: NVIDIA/TensorRT issue 3143 shows a DLA engine's layers as "{ForeignNode[Conv_0...Concat_198]}"
  plus staging layers "images to nvm", "head_3 from nvm", "images copy finish". The LayerType
  TensorRT gives a DLA subgraph is not in anything found; "DLA" below is an assumption, and
  the code also recognises a DLA subgraph by its ForeignNode name alone (tested separately).

Node names are those tf2onnx gives the default model (`resnet_v2_digits`).
"""
from __future__ import annotations

from typing import Any, Mapping

C1 = "Conv__187"
C2 = "resnet_v2_digits/block1/unit_1/bottleneck_v2/conv1/Conv2D"
C3 = "resnet_v2_digits/block1/unit_1/bottleneck_v2/conv2/Conv2D"
C4 = "resnet_v2_digits/block1/unit_1/bottleneck_v2/conv3/BiasAdd"
C5 = "resnet_v2_digits/block2/unit_1/bottleneck_v2/shortcut/BiasAdd"
C6 = "resnet_v2_digits/logits/BiasAdd"
CONVS = [C1, C2, C3, C4, C5, C6]

FORMAT = {"INT8": "Thirty-two wide channel vectorized row major Int8 format",
          "FP16": "Channel major FP16 format where channel % 8 == 0",
          "FP32": "Row major linear FP32"}
WEIGHTS = {"INT8": "Int8", "FP16": "Half", "FP32": "Float"}
TACTIC = {"INT8": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32_nchw_vect_c_32kcrs_vect_c_32_nchw_vect_c_32"
                  "_tilesize128x128x64_stage3_warpsize2x2x1_g1_tensor16x8x32",
          "FP16": "sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16_nhwckrsc_nhwc_tilesize64x64x64_stage4_warpsize2x2x1"
                  "_g1_tensor16x8x16",
          "FP32": "sm80_xmma_fprop_implicit_gemm_f32f32_f32f32_f32_nchwkcrs_nchw_tilesize64x64x8_stage3_warpsize1x4x1"
                  "_g1_ffma"}


def tensor(name: str, precision_or_format: str, dims: list[int]) -> dict[str, Any]:
    fmt = FORMAT.get(precision_or_format, precision_or_format)
    return {"Name": name, "Location": "Device", "Dimensions": dims, "Format/Datatype": fmt}


def metadata(*nodes: str, sep: str = "\x1f") -> str:
    return sep.join(f"[ONNX Layer: {n}]" for n in nodes)


def conv_layer(node: str, precision: str, fused: tuple[str, ...] = (), residual: bool = False,
               sep: str = "\x1f") -> dict[str, Any]:
    """A convolution as TensorRT fuses it: weight Q/DQ before, BN/ReLU/Add after."""
    weight = node.rsplit("/", 1)[0] + "/Conv2D_weights_fused_bn"
    qdq = (f"{weight}_QuantizeLinear", f"{weight}_DequantizeLinear") if precision == "INT8" else ()
    nodes = (*qdq, node, *fused)
    inputs = [tensor(f"{node}:input", precision, [8, 64, 8, 8])]
    if residual:
        inputs.append(tensor(f"{node}:residual", precision, [8, 64, 8, 8]))
    return {
        "Name": " + ".join(nodes), "LayerType": "CaskConvolution", "Inputs": inputs,
        "Outputs": [tensor(f"{node}:0", precision, [8, 64, 8, 8])],
        "ParameterType": "Convolution", "Kernel": [3, 3], "PaddingMode": "kEXPLICIT_ROUND_DOWN",
        "PrePadding": [1, 1], "PostPadding": [1, 1], "Stride": [1, 1], "Dilation": [1, 1], "OutMaps": 64,
        "Groups": 1, "Weights": {"Type": WEIGHTS[precision], "Count": 36864}, "Bias": {"Type": "Float", "Count": 64},
        "HasBias": 1, "HasReLU": int(bool(fused)), "HasSparseWeights": 0, "Activation": "RELU" if fused else "NONE",
        "TacticName": TACTIC[precision], "TacticValue": "0xef01fb6e433afa50", "StreamId": 0,
        "Metadata": metadata(*nodes, sep=sep),
    }


def engine_information(precisions: Mapping[str, str], io_key: str = "Bindings") -> dict[str, Any]:
    """A ResNet-like engine: the input Q (when any convolution is INT8), the six convolutions in
    the given precisions, a reformat before the logits, global pooling and the softmax."""
    layers = []
    if "INT8" in precisions.values():
        layers.append({"Name": "input_QuantizeLinear", "LayerType": "Reformat",
                       "Inputs": [tensor("input", "FP32", [8, 3, 32, 32])],
                       "Outputs": [tensor("input_quantized", "Row major Int8 format", [8, 3, 32, 32])],
                       "ParameterType": "Reformat", "Origin": "QDQ", "TacticValue": "0x00000000000003ea",
                       "StreamId": 0, "Metadata": metadata("input_QuantizeLinear")})
    for node in CONVS[:-1]:
        layers.append(conv_layer(node, precisions[node], fused=("resnet_v2_digits/pool1",) if node == C1 else (),
                                 residual=node == C4, sep="\x1e" if node == C5 else "\x1f"))
    layers.append({"Name": "resnet_v2_digits/pool5", "LayerType": "CaskPooling",
                   "Inputs": [tensor("pool5:in", "FP32", [8, 256, 2, 2])],
                   "Outputs": [tensor("resnet_v2_digits/pool5:0", "FP32", [8, 256, 1, 1])],
                   "ParameterType": "Pooling", "PoolingType": "AVERAGE", "TacticValue": "0x0", "StreamId": 0,
                   "Metadata": metadata("resnet_v2_digits/pool5")})
    # Reformat layers TensorRT inserts between formats carry no ONNX node.
    layers.append({"Name": f"Reformatting CopyNode for Input Tensor 0 to {C6}", "LayerType": "Reformat",
                   "Inputs": [tensor("resnet_v2_digits/pool5:0", "FP32", [8, 256, 1, 1])],
                   "Outputs": [tensor("logits:in", precisions[C6], [8, 256, 1, 1])],
                   "ParameterType": "Reformat", "Origin": "REFORMAT", "TacticValue": "0x0", "StreamId": 0})
    layers.append(conv_layer(C6, precisions[C6]))
    layers.append({"Name": "resnet_v2_digits/predictions", "LayerType": "CaskSoftMaxV2",
                   "Inputs": [tensor("logits", "FP32", [8, 10])],
                   "Outputs": [tensor("predictions", "FP32", [8, 10])],
                   "ParameterType": "SoftMax", "TacticValue": "0x0", "StreamId": 0,
                   "Metadata": metadata("resnet_v2_digits/SpatialSqueeze", "resnet_v2_digits/predictions")})
    io = ["input", "logits", "predictions"]
    return {"Layers": layers, io_key: io if io_key == "Bindings" else [{"Name": n} for n in io]}


# TensorRT 10, INT8 from the Q/DQ model: four convolutions in INT8, one fell to FP16, the logits FP32.
INT8_TRT10 = engine_information({C1: "INT8", C2: "INT8", C3: "INT8", C4: "INT8", C5: "FP16", C6: "FP32"})
# An "int8" engine where TensorRT ignored most scales.
INT8_MOSTLY_FLOAT = engine_information({C1: "INT8", C2: "FP16", C3: "FP16", C4: "FP32", C5: "FP16", C6: "FP32"})
# TensorRT 11, FP16: the logits convolution kept in FP32.
FP16_TRT11 = engine_information({C1: "FP16", C2: "FP16", C3: "FP16", C4: "FP16", C5: "FP16", C6: "FP32"},
                                io_key="I/O Tensors")
# Built without ProfilingVerbosity.DETAILED: names only.
NAMES_ONLY = {"Layers": ["input_QuantizeLinear", f"{C2} + resnet_v2_digits/block1/unit_1/bottleneck_v2/conv1/Relu"],
              "Bindings": ["input", "logits", "predictions"]}


def dla_engine_information() -> dict[str, Any]:
    """TensorRT 10.3 on Jetson AGX Orin, --dla-core 0 --gpu-fallback, FP16: the first five
    convolutions in one DLA subgraph (with its staging layers), the rest on the GPU."""
    staging = [{"Name": name, "LayerType": "Reformat", "Inputs": [tensor("input", "FP16", [1, 3, 32, 32])],
                "Outputs": [tensor("input:dla", "FP16", [1, 3, 32, 32])], "TacticValue": "0x0", "StreamId": 0}
               for name in ("input to nvm", "input copy finish")]
    dla = {"Name": f"{{ForeignNode[{C1}...{C5}]}}", "LayerType": "DLA",
           "Inputs": [tensor("input:dla", "Channel major FP16 format where channel == 4 and column stride % 32 == 0",
                             [1, 3, 32, 32])],
           "Outputs": [tensor(f"{C5}:0", "FP16", [1, 256, 2, 2])], "TacticValue": "0x0000000000000003", "StreamId": 0,
           "Metadata": metadata(C1, "resnet_v2_digits/pool1", C2, C3, C4, "resnet_v2_digits/block1/unit_1/add", C5)}
    back = {"Name": f"{C5}:0 from nvm", "LayerType": "Reformat", "Inputs": [tensor(f"{C5}:0", "FP16", [1, 256, 2, 2])],
            "Outputs": [tensor("pool5:in", "FP16", [1, 256, 2, 2])], "TacticValue": "0x0", "StreamId": 0}
    gpu = engine_information({C1: "FP16", C2: "FP16", C3: "FP16", C4: "FP16", C5: "FP16", C6: "FP16"})["Layers"][5:]
    return {"Layers": staging + [dla, back] + gpu, "Bindings": ["input", "logits", "predictions"]}


DLA_TRT10 = dla_engine_information()


def myelin_engine_information() -> dict[str, Any]:
    """TensorRT 10 INT8 from the Q/DQ model where the first four convolutions were compiled as
    one Myelin subgraph: the layer shows only its FP32 boundary (its input is the network's FP32
    input, before the fused Quantize), no weights, and names its nodes in Metadata. C5 and the
    logits are ordinary CaskConvolutions in INT8; C5's input format, a fused Quantize's FP32
    input, is not its precision, its Int8 weights are."""
    nodes = ("input_QuantizeLinear", C1, "resnet_v2_digits/pool1", C2, C3, C4)
    myelin = {"Name": f"{{ForeignNode[input_QuantizeLinear...{C4}]}}", "LayerType": "Myelin",
              "Inputs": [tensor("input", "FP32", [8, 3, 32, 32])],
              "Outputs": [tensor(f"{C4}:0", "FP32", [8, 64, 8, 8])], "TacticName": "myelin_kernel",
              "TacticValue": "0x0", "StreamId": 0, "Metadata": metadata(*nodes)}
    c5 = conv_layer(C5, "INT8")
    c5["Inputs"][0] = tensor(f"{C5}:input", "FP32", [8, 64, 8, 8])
    gpu = engine_information(dict.fromkeys(CONVS, "INT8"))["Layers"]
    rest = [layer for layer in gpu if not any(n in layer.get("Metadata", "") for n in (C1, C2, C3, C4, C5))
            and layer["Name"] != "input_QuantizeLinear"]
    return {"Layers": [myelin, c5, *rest], "Bindings": ["input", "logits", "predictions"]}


MYELIN_INT8 = myelin_engine_information()
