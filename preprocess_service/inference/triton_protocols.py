"""The two ways to talk to Triton: what differs between tritonclient's HTTP and gRPC asyncio
clients (client class, how a config is fetched, binary tensors, per-call deadlines), and nothing else."""

from __future__ import annotations

from typing import Any

import numpy as np
import tritonclient.grpc as grpc_types
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http as http_types
import tritonclient.http.aio as http_aio

from preprocess_service.inference.grpc_channel import channel_options


class HttpProtocol:
    name = "http"

    def client(self, url: str, timeout_s: float) -> Any:
        return http_aio.InferenceServerClient(url, conn_timeout=timeout_s)

    def call_options(self, timeout_s: float) -> dict[str, Any]:
        return {}  # the connection timeout is the client's; the service's own deadline covers the rest

    async def config(self, client: Any, model: str, **options: Any) -> dict:
        return await client.get_model_config(model, **options)

    def input(self, name: str, data: np.ndarray | None, datatype: str, shape: list[int]) -> Any:
        tensor = http_types.InferInput(name, shape, datatype)
        if data is not None:
            tensor.set_data_from_numpy(data, binary_data=True)
        return tensor

    def output(self, name: str) -> Any:
        return http_types.InferRequestedOutput(name, binary_data=True)


class GrpcProtocol:
    name = "grpc"

    def __init__(self, channel_args: list | None = None) -> None:
        self._channel_args = channel_args if channel_args is not None else channel_options()

    def client(self, url: str, timeout_s: float) -> Any:
        return grpc_aio.InferenceServerClient(url, channel_args=self._channel_args)

    def call_options(self, timeout_s: float) -> dict[str, Any]:
        return {"client_timeout": timeout_s}

    async def config(self, client: Any, model: str, **options: Any) -> dict:
        return (await client.get_model_config(model, as_json=True, **options))["config"]

    def input(self, name: str, data: np.ndarray | None, datatype: str, shape: list[int]) -> Any:
        tensor = grpc_types.InferInput(name, shape, datatype)
        if data is not None:
            tensor.set_data_from_numpy(data)
        return tensor

    def output(self, name: str) -> Any:
        return grpc_types.InferRequestedOutput(name)


TritonProtocol = HttpProtocol | GrpcProtocol
