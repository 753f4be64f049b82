"""Triton Inference Server over HTTP or gRPC, with tritonclient's asyncio clients.

One client per application, reused for every request (connection pooling); tensors travel as
binary data; uint8 crops are sent as they are (the backbone normalises inside). Tensor names,
the crop size and the largest batch are read from the served models' configs, as Triton's client
examples do. Every call has a deadline the service enforces itself, and any transport failure
becomes ``BackendUnavailable`` (503), so a dying, frozen or restarting Triton never shows as a 500
or a hang.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import numpy as np
from tritonclient.utils import InferenceServerException

from model_contract import TEMPORAL_OUTPUTS
from preprocess_service.errors import BackendUnavailable
from preprocess_service.inference.base import ChunkedBackend, ModelInfo, ServedModels, identify
from preprocess_service.inference.shared_memory import SharedMemoryPool
from preprocess_service.inference.triton_protocols import TritonProtocol

# Every way a dying, frozen or restarting Triton shows itself, over either protocol.
TRANSPORT_ERRORS = (
    InferenceServerException,
    OSError,
    asyncio.TimeoutError,
    ConnectionError,
    aiohttp.ClientError,
    grpc.RpcError,
)
log = logging.getLogger("deepfake.triton")


class TritonBackend(ChunkedBackend):
    def __init__(
        self,
        protocol: TritonProtocol,
        url: str,
        backbone_model: str,
        temporal_model: str,
        timeout_s: float = 30.0,
        shm_regions: int = 0,
    ) -> None:
        self.name = f"triton-{protocol.name}"
        self._protocol, self._url, self._timeout_s = protocol, url, timeout_s
        self._models = (backbone_model, temporal_model)
        self._client: Any = None
        self._shared_memory = SharedMemoryPool(shm_regions) if shm_regions else None

    def _client_now(self) -> Any:
        if self._client is None:
            self._client = self._protocol.client(self._url, self._timeout_s)
        return self._client

    async def _guarded(self, what: str, request: Callable[[Any], Awaitable[Any]]) -> Any:
        """The deadline is enforced here, by the service: a frozen server must not hold a request past it."""
        try:
            return await asyncio.wait_for(request(self._client_now()), self._timeout_s)
        except TRANSPORT_ERRORS as error:
            log.warning("Triton at %s (%s) failed on %s: %r", self._url, self.name, what, error)
            # the address and the server's words stay in the log: they tell an attacker about the inside
            raise BackendUnavailable(
                "the model server did not answer; retry shortly", headers={"Retry-After": "2"}
            ) from error

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        kwargs.update(self._protocol.call_options(self._timeout_s))
        return await self._guarded(method, lambda client: getattr(client, method)(*args, **kwargs))

    async def _config(self, model: str) -> dict:
        options = self._protocol.call_options(self._timeout_s)
        return await self._guarded("get_model_config", lambda client: self._protocol.config(client, model, **options))

    async def start(self) -> ModelInfo:
        backbone_name, temporal_name = self._models
        backbone, temporal = await self._config(backbone_name), await self._config(temporal_name)
        self.served = ServedModels(
            backbone=backbone_name,
            temporal=temporal_name,
            backbone_input=backbone["input"][0]["name"],
            backbone_output=backbone["output"][0]["name"],
            temporal_input=temporal["input"][0]["name"],
            temporal_output=_named(temporal["output"], TEMPORAL_OUTPUTS[0]),
            input_size=int(backbone["input"][0]["dims"][0]),
            max_batch=min(int(backbone.get("max_batch_size", 1)), int(temporal.get("max_batch_size", 1))) or 1,
        )
        if self._shared_memory is not None and not self._shared_memory.opened:
            size = self.served.input_size
            await self._shared_memory.open(self._call, self.served.max_batch * size * size * 3)
        parameters = {key: value["string_value"] for key, value in backbone.get("parameters", {}).items()}
        runtime = backbone.get("platform") or backbone.get("backend") or "unknown"
        return identify(parameters, self.served.input_size, self.name, f"triton {runtime}")

    async def ready(self) -> bool:
        try:
            return all([await self._call("is_model_ready", model) for model in self._models])
        except BackendUnavailable:
            return False

    async def _infer(self, model: str, inputs: list[Any], output: str) -> np.ndarray:
        result = await self._call("infer", model, inputs, outputs=[self._protocol.output(output)])
        return result.as_numpy(output)

    async def _run_backbone(self, faces: np.ndarray) -> np.ndarray:
        served = self.served
        assert served is not None  # _max_batch() refused before
        if self._shared_memory is None:
            tensor = self._protocol.input(served.backbone_input, faces, "UINT8", list(faces.shape))
            return await self._infer(served.backbone, [tensor], served.backbone_output)
        async with self._shared_memory.holding(self._call, faces) as region:
            tensor = self._protocol.input(served.backbone_input, None, "UINT8", list(faces.shape))
            tensor.set_shared_memory(region, faces.nbytes)
            return await self._infer(served.backbone, [tensor], served.backbone_output)

    async def _run_temporal(self, features: np.ndarray) -> np.ndarray:
        served = self.served
        assert served is not None
        tensor = self._protocol.input(served.temporal_input, features, "FP32", list(features.shape))
        return await self._infer(served.temporal, [tensor], served.temporal_output)

    async def close(self) -> None:
        if self._shared_memory is not None:
            await self._shared_memory.close(self._call)
        if self._client is not None:
            await self._client.close()
            self._client = None


def _named(tensors: list[dict], preferred: str) -> str:
    """The output the contract names, when the model has it; else its first."""
    names = [tensor["name"] for tensor in tensors]
    return preferred if preferred in names else names[0]
