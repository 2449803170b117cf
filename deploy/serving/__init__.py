"""Serving the bundle beyond one device: a Triton model repository and a DeepStream nvinfer config.

- `pbtxt`: protobuf text format for Triton's `config.pbtxt` (ModelConfig).
- `labels`: class names per model output, as Triton's `label_filename` and DeepStream's labels file read them.
- `engines`: the TensorRT plans a `tensorrt_plan` model serves, checked against the flags.
- `configs`: the ModelConfig of each platform, the preprocessing model and the ensemble.
- `vendor`: the part of `deploy` the python-backend models import, copied beside them.
- `repository`: writing the repository atomically and saying what changed.
- `triton_models/`: the `model.py` files Triton's python backend runs (not imported here).
- `deepstream`: the Gst-nvinfer config and the preprocessing mapping.
- `load`: the bounded load test against a live server (`trtdeploy bench --triton`).

Writers need only the standard library and numpy: no TensorFlow, ONNX Runtime or tritonclient.
"""
