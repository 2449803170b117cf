"""Triton python-backend model: the bundle's classifier through trtdeploy's own runners.

For Triton builds without the TensorRT or ONNX Runtime backend. `parameters` of config.pbtxt
say which runner: `onnxruntime` (the ONNX of the served precision, on the CPU, as
`trtdeploy infer --backend onnxruntime` runs it) or `tensorrt` (a plan and its sidecar, through
the pycuda runner, on the instance's GPU). The requests Triton's dynamic batcher hands over in
one `execute` call are run as one batch (split where an engine's profile takes fewer) and the
outputs handed back per request; a request of zero samples is answered with zero rows.

Written by `trtdeploy triton --platform python` as REPO/NAME/1/model.py, beside
`trtdeploy.json`, the model file and `trtdeploy_lib/` (the deploy modules it imports).
"""
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "trtdeploy_lib"))

from deploy.errors import DeployError  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        with open(os.path.join(HERE, "trtdeploy.json")) as f:
            spec = json.load(f)
        self.input = spec["input"]
        self.outputs = {o["name"]: (tuple(o["shape"][1:]), np.dtype(o["dtype"])) for o in spec["outputs"]}
        path = os.path.join(HERE, params["model_file"])
        if params["runner"] == "tensorrt":
            from deploy.trt.runtime import TrtRunner

            device = int(args.get("model_instance_device_id") or 0)
            self.runner = TrtRunner(path, name=args["model_name"], device=device, timing=False)
        else:
            from deploy.runners.ort import OrtRunner

            self.runner = OrtRunner(path, name=args["model_name"])
        self.runner.activate()

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        sizes = [len(a) for a in arrays]
        try:
            outputs = self._run(arrays)
        except DeployError as e:
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e), pb_utils.TritonError.INVALID_ARG))
                    for _ in requests]
        responses, start = [], 0
        for n in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(value[start:start + n]))
                       for name, value in outputs.items()]
            responses.append(pb_utils.InferenceResponse(tensors))
            start += n
        return responses

    def _run(self, arrays):
        if sum(len(a) for a in arrays) == 0:
            return {name: np.zeros((0,) + shape, dtype) for name, (shape, dtype) in self.outputs.items()}
        batch = np.ascontiguousarray(np.concatenate(arrays))
        out = self.runner.infer_any_batch({self.input: batch})
        return {name: out[name] for name in self.outputs}

    def finalize(self):
        self.runner.close()
