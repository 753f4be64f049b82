"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from preprocess_service.dependencies import ServicesDep
from preprocess_service.errors import BackendUnavailable
from preprocess_service.machine import machine_facts
from preprocess_service.presenter import model_block

router = APIRouter(tags=["health"])
READY_TIMEOUT_S = 1.5


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers; says nothing of the model (that is /readyz)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> dict:
    """Ready when the backend answers and both models are loaded: take traffic only then. A history
    that cannot store answers makes the status ``degraded`` (with the reason) rather than unready."""
    try:  # a frozen model server must not freeze the probe: answer within READY_TIMEOUT_S whatever it does
        model = await asyncio.wait_for(asyncio.shield(services.analyzer.model_info()), READY_TIMEOUT_S)
        ready = await asyncio.wait_for(services.backend.ready(), READY_TIMEOUT_S)
    except TimeoutError:
        raise BackendUnavailable(f"{services.backend.name}: no answer within {READY_TIMEOUT_S:g} s") from None
    if not ready:
        raise BackendUnavailable(f"{services.backend.name}: models not ready")
    history = await asyncio.to_thread(services.history.health)
    return {  # degraded: answers are given, but the history cannot store them (still 200: keep serving)
        "status": "degraded" if history["status"] == "degraded" else "ready",
        "history": history,
        "backend": services.backend.name,
        "family": model.family,
        "untrained_demo": model.untrained_demo,
        "verdict_rule": services.settings.verdict,
        "model": model_block(model).model_dump(),
        "machine": machine_facts(),  # which processor and instruction sets (AMX, AVX-512 BF16, VNNI) serve
    }


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
