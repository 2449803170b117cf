"""config.pbtxt text is read back by protobuf's own text-format parser into Triton's ModelConfig
message (tritonclient ships model_config_pb2, generated from common/protobuf/model_config.proto):
an unknown field, a wrong enum or a malformed map fails there as it would in the server."""
from __future__ import annotations

import pytest

from deploy.serving.pbtxt import Comment, Enum, Map, render, string_parameters


def parse(text: str):
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                           reason="tritonclient (the test extra) ships ModelConfig's protobuf")
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_every_kind_of_field_reads_back_as_written():
    text = render({"#": Comment("two\nlines"), "name": 'a "quoted" name', "platform": "tensorrt_plan",
                   "max_batch_size": 16,
                   "input": [{"name": "input", "data_type": Enum("TYPE_FP32"), "dims": [3, 224, 224]}],
                   "output": [{"name": "logits", "data_type": Enum("TYPE_FP32"), "dims": [1001],
                               "label_filename": "labels.txt"}],
                   "instance_group": [{"count": 2, "kind": Enum("KIND_GPU")}],
                   "dynamic_batching": {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 100},
                   "cc_model_filenames": Map({"8.7": "model.sm_87.plan", "9.0": "model.sm_90.plan"}),
                   "optimization": {"cuda": {"graphs": True}},
                   "parameters": string_parameters({"trtdeploy_precision": "int8"}), "skipped": None})
    assert text.startswith("# two\n# lines\n")
    c = parse(text)
    assert c.name == 'a "quoted" name' and c.max_batch_size == 16
    assert list(c.input[0].dims) == [3, 224, 224] and c.output[0].label_filename == "labels.txt"
    assert c.instance_group[0].count == 2 and c.instance_group[0].kind == 1  # KIND_GPU
    assert list(c.dynamic_batching.preferred_batch_size) == [4, 8]
    assert dict(c.cc_model_filenames) == {"8.7": "model.sm_87.plan", "9.0": "model.sm_90.plan"}
    assert c.optimization.cuda.graphs is True
    assert c.parameters["trtdeploy_precision"].string_value == "int8"


def test_a_misspelt_field_is_what_the_parser_refuses():
    from google.protobuf.text_format import ParseError

    with pytest.raises(ParseError):
        parse(render({"max_batch": 4}))
