"""Triton python-backend model: encoded images -> the bundle's model input.

Input `image`: TYPE_STRING, [N, 1], each element the bytes of a JPEG or PNG file. Output: the
bundle's input tensor, [N, C, H, W] (or NHWC), made by the bundle's own preprocessing, the code
`trtdeploy infer` runs on a file's bytes (`decode_image`, then `Preprocess.apply`). A request
whose bytes are not an image gets an INVALID_ARG error naming the element; the other requests
of the same batch are answered (python_backend README, "Error Handling").

Written by `trtdeploy triton` as REPO/NAME_preprocess/1/model.py, beside `trtdeploy.json` (what
to produce) and `trtdeploy_lib/` (the deploy modules it imports).
"""
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "trtdeploy_lib"))

from deploy.data.preprocess import Preprocess, decode_image  # noqa: E402
from deploy.errors import DeployError  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        with open(os.path.join(HERE, "trtdeploy.json")) as f:
            spec = json.load(f)
        self.preprocess = Preprocess.from_json(spec["preprocessing"])
        self.input = spec["image_input"]
        self.output = spec["input"]
        self.dtype = np.dtype(spec["dtype"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                batch = self._images(pb_utils.get_input_tensor_by_name(request, self.input).as_numpy())
            except DeployError as e:
                error = pb_utils.TritonError(str(e), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output, batch)]))
        return responses

    def _images(self, items):
        rows = items.reshape(len(items), -1)
        out = np.empty((len(rows),) + tuple(self.preprocess.sample_shape), dtype=self.dtype)
        for i, row in enumerate(rows):
            data = row[0]
            out[i] = self.preprocess.apply(decode_image(bytes(data), f"{self.input}[{i}]"))
        return out
