"""A stand-in for Triton's onnxruntime and openvino backends, as a Python-based backend, for tests
on this CPU host.

The tritonserver binary available here (from the nvidia-pytriton wheel) has neither backend's
library. Triton loads a backend named ``onnxruntime`` (or ``openvino``) from
``<backend-dir>/<name>/model.py`` when no ``libtriton_<name>.so`` is there, so the committed
``config.pbtxt`` files (``platform: "onnxruntime_onnx"``, ``backend: "openvino"``) load unchanged.
This file is copied to both places; it lives in the test tooling only, never in model_repository/.
GPU execution and TensorRT are exercised only in the official container.

What the config asks for is what runs: ``backend: "openvino"`` (with ``HINT_BF16``) or the ONNX
Runtime backend's ``openvino`` CPU accelerator compile the file with OpenVINO, the same way the
real backends do; anything else runs on ONNX Runtime's CPU provider.

Each ``execute`` receives the requests the dynamic batcher grouped; like the real backends, it
runs them as one batch (concatenated along the batch axis) and splits the outputs back.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameter(config, key):
    return config.get("parameters", {}).get(key, {}).get("string_value", "")


def _wants_openvino(config):
    if config.get("backend") == "openvino":
        return True
    accelerators = config.get("optimization", {}).get("execution_accelerators", {})
    return any(a.get("name") == "openvino" for a in accelerators.get("cpu_execution_accelerator", []))


class _OpenVino:
    def __init__(self, path, config):
        import openvino

        precision = "bf16" if _parameter(config, "HINT_BF16").upper() == "YES" else "f32"
        hint = _parameter(config, "PERFORMANCE_HINT") or "LATENCY"
        self.compiled = openvino.Core().compile_model(
            path, "CPU", {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
        )
        self.request = self.compiled.create_infer_request()

    def run(self, output_names, feed):
        self.request.infer(feed)
        return [np.array(self.request.get_tensor(name).data, copy=True) for name in output_names]


class _OnnxRuntime:
    def __init__(self, path, config):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(self, output_names, feed):
        return self.session.run(output_names, feed)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        model_dir = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(model_dir, config.get("default_model_filename") or "model.onnx")
        self.engine = (_OpenVino if _wants_openvino(config) else _OnnxRuntime)(path, config)
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
            outputs = self.engine.run(self.output_names, feed)
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
