"""A stand-in for Triton's onnxruntime backend, as a Python-based backend, for tests on this CPU host.

The tritonserver binary available here (from the nvidia-pytriton wheel) has no onnxruntime backend
library. Triton loads a backend named ``onnxruntime`` from ``<backend-dir>/onnxruntime/model.py``
when no ``libtriton_onnxruntime.so`` is there, so the committed ``config.pbtxt`` files
(``platform: "onnxruntime_onnx"``) load unchanged. This file lives in the test tooling only, never
in model_repository/; GPU execution and ORT tuning are exercised only in the official container.

Each ``execute`` receives the requests the dynamic batcher grouped; like the real backend, it
runs them as one batch (concatenated along the batch axis) and splits the outputs back.
"""

import json
import os

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        filename = config.get("default_model_filename") or "model.onnx"
        self.session = onnxruntime.InferenceSession(
            os.path.join(model_dir, filename), providers=["CPUExecutionProvider"]
        )
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests):
        inputs = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names] for r in requests
        ]
        responses = [None] * len(requests)
        groups = {}  # requests whose non-batch shapes agree run together
        for index, tensors in enumerate(inputs):
            groups.setdefault(tuple(t.shape[1:] for t in tensors), []).append(index)
        for members in groups.values():
            feed = {name: np.concatenate([inputs[i][k] for i in members]) for k, name in enumerate(self.input_names)}
            outputs = self.session.run(self.output_names, feed)
            start = 0
            for i in members:
                size = inputs[i][0].shape[0]
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(out[start : start + size]))
                    for name, out in zip(self.output_names, outputs)  # noqa: B905 - the stub may run an older Python
                ]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += size
        return responses
