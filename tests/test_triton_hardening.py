"""Triton's restricted APIs, with the flags exactly as the manifests write them, on a real tritonserver
(2.51 from PyPI here; the flags are the same in the cluster's 25.10): the admin APIs answer only the
admin-key header, while what the front uses (health, metadata, inference) needs none."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.test_deploy import container, render

KEY = "k3y-from-the-secret-file"


@pytest.fixture(scope="module")
def restricted_triton(demo_repository):
    from deploy.triton_local.server import start_triton

    triton = container(render("cpu"), "triton")
    script = triton["command"][2]
    flags = [f"{name}={value.replace('$key', KEY)}" for name, value in re.findall(r'(--[\w-]+)="([^"]+)"', script)]
    assert len(flags) == 2
    flags += [arg for arg in triton["args"] if arg.startswith("--grpc-max-connection-age")]  # the 2.51 flags too
    server = start_triton(demo_repository, extra_args=flags)
    yield server
    server.stop()


ADMIN_HTTP = [
    ("GET", "/v2/systemsharedmemory/status"),
    ("GET", "/v2/models/stats"),
    ("POST", "/v2/repository/index"),
    ("GET", "/v2/logging"),
    ("GET", "/v2/trace/setting"),
]


def test_admin_http_apis_need_the_key(restricted_triton):
    base = f"http://{restricted_triton.http_url}"
    for method, path in ADMIN_HTTP:
        refused = httpx.request(method, base + path)
        assert refused.status_code == 403, (path, refused.status_code, refused.text)
        allowed = httpx.request(method, base + path, headers={"admin-key": KEY})
        assert allowed.status_code == 200, (path, allowed.status_code, allowed.text)
    assert httpx.get(base + "/v2/health/ready").status_code == 200


def test_the_fronts_grpc_calls_need_no_key_and_admin_ones_do(restricted_triton):
    client = grpcclient.InferenceServerClient(restricted_triton.grpc_url)
    assert client.is_server_ready() and client.is_model_ready("deepfake_temporal")
    metadata = client.get_model_metadata("deepfake_temporal", as_json=True)
    features = grpcclient.InferInput("features", [1, 30, 2048], "FP32")
    features.set_data_from_numpy(np.zeros((1, 30, 2048), np.float32))
    answer = client.infer("deepfake_temporal", [features]).as_numpy(metadata["outputs"][0]["name"])
    assert answer.shape == (1, 2) and np.isclose(answer.sum(), 1.0, atol=1e-4)
    for call in (client.get_inference_statistics, client.get_system_shared_memory_status, client.get_log_settings):
        with pytest.raises(
            InferenceServerException, match="restricted, expecting header 'triton-grpc-protocol-admin-key'"
        ):
            call()
        with pytest.raises(InferenceServerException, match="restricted"):
            call(headers={"triton-grpc-protocol-admin-key": "a wrong key"})
        call(headers={"triton-grpc-protocol-admin-key": KEY})
