"""Inference backends behind one interface; ``DEEPFAKE_BACKEND`` picks one."""

from __future__ import annotations

from model_contract import backbone_model_name
from preprocess_service.inference.base import InferenceBackend
from preprocess_service.settings import Settings


def make_backend(settings: Settings) -> InferenceBackend:
    if settings.backend == "embedded":
        from preprocess_service.inference.embedded import EmbeddedBackend

        served = settings.served_plan
        return EmbeddedBackend(
            settings.model_repository,
            settings.backbone_model or backbone_model_name(served.precision),
            settings.temporal_model,
            settings.inference_threads,
            settings.ort_memory_arena,
            served.runtime,
            served.precision,
        )
    from preprocess_service.inference.grpc_channel import channel_options
    from preprocess_service.inference.triton import TritonBackend
    from preprocess_service.inference.triton_protocols import GrpcProtocol, HttpProtocol, TritonProtocol

    protocol: TritonProtocol = HttpProtocol()
    if settings.backend == "triton-grpc":
        options = channel_options(
            settings.triton_grpc_lb, settings.triton_grpc_attempts, settings.triton_grpc_max_reconnect_s
        )
        protocol = GrpcProtocol(options)
    url = settings.triton_http_url if protocol.name == "http" else settings.triton_grpc_url
    return TritonBackend(
        protocol,
        url,
        settings.backbone_model_name,
        settings.temporal_model,
        settings.triton_timeout_s,
        shm_regions=settings.max_in_flight if settings.triton_shm else 0,
    )


__all__ = ["InferenceBackend", "make_backend"]
