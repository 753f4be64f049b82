"""Triton Inference Server over HTTP or gRPC, with tritonclient's asyncio clients.

One client per application, reused for every request (connection pooling); tensors travel as
binary data; uint8 crops are sent as they are (the backbone normalises inside). Any transport
failure becomes ``BackendUnavailable`` (503), so a restarting Triton never shows as a 500.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import aiohttp
import grpc
import numpy as np
import tritonclient.grpc as grpc_types
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http as http_types
import tritonclient.http.aio as http_aio
import tritonclient.utils.shared_memory as system_shm
from tritonclient.utils import InferenceServerException

from preprocess_service.errors import BackendUnavailable
from preprocess_service.inference.base import ModelInfo, in_chunks

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


class TritonBackend:
    """Shared by both protocols: they differ only in client class, tensor types and timeouts."""

    def __init__(
        self,
        protocol: str,
        url: str,
        backbone_model: str,
        temporal_model: str,
        timeout_s: float = 30.0,
        max_batch: int = 64,
        shm_regions: int = 0,
    ) -> None:
        self.name = f"triton-{protocol}"
        self._protocol, self._url, self._timeout_s, self._max_batch = protocol, url, timeout_s, max_batch
        self._backbone_model, self._temporal_model = backbone_model, temporal_model
        self._types = http_types if protocol == "http" else grpc_types
        self._client: Any = None
        self._shm_regions = shm_regions
        self._free_regions: asyncio.Queue | None = None
        self._all_regions: list[tuple[str, Any]] = []
        self._region_bytes = 0
        self._regions_stale = False  # a restarted Triton has forgotten the registrations

    def _new_client(self):
        if self._protocol == "http":
            return http_aio.InferenceServerClient(self._url, conn_timeout=self._timeout_s)
        return grpc_aio.InferenceServerClient(self._url)

    async def _call(self, method: str, *args, **kwargs):
        if self._client is None:
            self._client = self._new_client()
        if self._protocol == "grpc":
            kwargs.setdefault("client_timeout", self._timeout_s)
        try:  # the deadline is enforced here too: a frozen server must not hold a request past it
            return await asyncio.wait_for(getattr(self._client, method)(*args, **kwargs), self._timeout_s)
        except TRANSPORT_ERRORS as error:
            log.warning("Triton at %s (%s) failed on %s: %r", self._url, self.name, method, error)
            # the address and the server's words stay in the log: they tell an attacker about the inside
            raise BackendUnavailable(
                "the model server did not answer; retry shortly", headers={"Retry-After": "2"}
            ) from error

    async def _config(self, model: str) -> dict:
        if self._protocol == "http":
            return await self._call("get_model_config", model)
        return (await self._call("get_model_config", model, as_json=True))["config"]

    async def start(self) -> ModelInfo:
        config = await self._config(self._backbone_model)
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        input_size = int(config["input"][0]["dims"][0])
        if self._shm_regions and self._free_regions is None:
            await self._register_regions(self._max_batch * input_size * input_size * 3)
        return ModelInfo.from_parameters(parameters, input_size, self.name)

    async def _register_regions(self, byte_size: int) -> None:
        """System shared memory for face crops (same host only): one region per admitted analysis,
        registered once, so a request carries a region name instead of megabytes of pixels."""
        self._free_regions, self._region_bytes = asyncio.Queue(), byte_size
        for index in range(self._shm_regions):
            name = f"deepfake_faces_{os.getpid()}_{index}"
            handle = system_shm.create_shared_memory_region(name, f"/{name}", byte_size)
            await self._call("register_system_shared_memory", name, f"/{name}", byte_size)
            self._all_regions.append((name, handle))
            self._free_regions.put_nowait((name, handle))

    async def ready(self) -> bool:
        try:
            return all(
                [
                    await self._call("is_model_ready", self._backbone_model),
                    await self._call("is_model_ready", self._temporal_model),
                ]
            )
        except BackendUnavailable:
            return False

    async def _infer(self, model: str, input_name: str, data: np.ndarray, datatype: str, output: str) -> np.ndarray:
        infer_input = self._types.InferInput(input_name, list(data.shape), datatype)
        if self._protocol == "http":
            infer_input.set_data_from_numpy(data, binary_data=True)
        else:
            infer_input.set_data_from_numpy(data)
        result = await self._call("infer", model, [infer_input], outputs=[self._requested(output)])
        return result.as_numpy(output)

    async def _run_backbone(self, faces: np.ndarray) -> np.ndarray:
        faces = np.ascontiguousarray(faces)
        if self._free_regions is None:
            return await self._infer(self._backbone_model, "faces", faces, "UINT8", "features")
        name, handle = await self._free_regions.get()
        try:
            if self._regions_stale:
                await self._reregister()
            system_shm.set_shared_memory_region(handle, [faces])
            infer_input = self._types.InferInput("faces", list(faces.shape), "UINT8")
            infer_input.set_shared_memory(name, faces.nbytes)
            result = await self._call(
                "infer", self._backbone_model, [infer_input], outputs=[self._requested("features")]
            )
            return result.as_numpy("features")
        except BackendUnavailable:
            self._regions_stale = True
            raise
        finally:
            self._free_regions.put_nowait((name, handle))

    async def _reregister(self) -> None:
        for name, _ in self._all_regions:
            try:
                await self._call("unregister_system_shared_memory", name)
            except BackendUnavailable:
                pass
            await self._call("register_system_shared_memory", name, f"/{name}", self._region_bytes)
        self._regions_stale = False

    def _requested(self, output: str):
        if self._protocol == "http":
            return self._types.InferRequestedOutput(output, binary_data=True)
        return self._types.InferRequestedOutput(output)

    async def _run_temporal(self, features: np.ndarray) -> np.ndarray:
        return await self._infer(
            self._temporal_model, "features", np.ascontiguousarray(features, np.float32), "FP32", "probabilities"
        )

    async def features(self, faces: np.ndarray) -> np.ndarray:
        return await in_chunks(self._run_backbone, faces, self._max_batch)

    async def probabilities(self, features: np.ndarray) -> np.ndarray:
        return await in_chunks(self._run_temporal, features, self._max_batch)

    async def close(self) -> None:
        for name, handle in self._all_regions:
            try:
                await self._call("unregister_system_shared_memory", name)
            except BackendUnavailable:
                pass  # Triton is gone; its registrations went with it
            system_shm.destroy_shared_memory_region(handle)
        self._all_regions.clear()
        self._free_regions = None
        if self._client is not None:
            await self._client.close()
            self._client = None
