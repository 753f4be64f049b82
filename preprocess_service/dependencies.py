"""What routes get through ``Depends``: the app's services, admission control, the upload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from preprocess_service.access import AccessPolicy, Caller
from preprocess_service.errors import Overloaded, Unauthorized
from preprocess_service.faces import FaceDetector
from preprocess_service.history.recorder import History
from preprocess_service.inference import InferenceBackend
from preprocess_service.integrity import Signer
from preprocess_service.metrics import Metrics
from preprocess_service.pipeline import Analyzer
from preprocess_service.settings import Settings
from preprocess_service.uploads import ReadLimits, Upload, receive_upload


@dataclass
class Services:
    """Everything made once per application (in the lifespan) and shared by requests."""

    settings: Settings
    backend: InferenceBackend
    detector: FaceDetector
    pool: ThreadPoolExecutor
    analyzer: Analyzer
    signer: Signer
    metrics: Metrics
    access: AccessPolicy
    history: History
    in_flight: int = 0


def get_services(request: Request) -> Services:
    return request.app.state.services


@asynccontextmanager
async def _analysis_slot(services: Services) -> AsyncIterator[None]:
    """A bounded number of uploads in progress at once; past it, 503 + Retry-After before reading."""
    if services.in_flight >= services.settings.max_in_flight:
        services.metrics.rejected.inc()
        raise Overloaded(
            f"{services.in_flight} requests are in progress; retry shortly",
            headers={"Retry-After": str(services.settings.retry_after_s)},
        )
    services.in_flight += 1
    services.metrics.in_flight.inc()
    try:
        yield
    finally:
        services.in_flight -= 1
        services.metrics.in_flight.dec()


async def admitted(request: Request, services: Services = Depends(get_services)) -> AsyncIterator[Caller]:
    """Authorised (where keys are required), within the caller's rate, and within the slots."""
    caller = services.access.admit(request)
    async with _analysis_slot(services):
        yield caller


async def owner_of_request(request: Request, services: Services = Depends(get_services)) -> Caller:
    """Stored things (history, stats, artefacts): a caller who owns some. Where keys are configured,
    a caller without one owns nothing here and gets 401, whether keys are required or not."""
    caller = services.access.admit(request)
    if caller.owner is None:
        raise Unauthorized("the history belongs to API keys: send one (X-API-Key or Authorization: Bearer)")
    return caller


async def admitted_to_sign(request: Request, services: Services = Depends(get_services)) -> AsyncIterator[None]:
    """Signing needs a key whenever keys are configured, and has its own, lower rate."""
    services.access.admit(request, signing=True)
    async with _analysis_slot(services):
        yield


async def received_upload(request: Request, services: Services = Depends(get_services)) -> AsyncIterator[Upload]:
    settings = services.settings
    limits = ReadLimits(settings.upload_idle_timeout_s, settings.upload_min_rate_kib_s * 1024)
    async with receive_upload(request, settings.max_upload_bytes, settings.upload_dir, limits) as upload:
        yield upload


def multipart_body(*text_fields: str) -> dict:
    """OpenAPI description of the streamed multipart body (it is parsed by hand, see uploads.py)."""
    properties = {"file": {"type": "string", "format": "binary"}}
    properties.update({name: {"type": "string"} for name in text_fields})
    schema = {"type": "object", "properties": properties, "required": ["file", *text_fields]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


# What routes declare: ``services: ServicesDep``, ``upload: UploadDep``, ``caller: AdmittedCaller``
# (an analysis slot) or ``OwnerCaller`` (stored things), ``dependencies=[Admitted]``.
# scope="function": the slot is released and the temporary file deleted when the route returns,
# before the answer is sent, so a client that has its answer never sees a file or slot still held.
ServicesDep = Annotated[Services, Depends(get_services)]
UploadDep = Annotated[Upload, Depends(received_upload, scope="function")]
AdmittedCaller = Annotated[Caller, Depends(admitted, scope="function")]
OwnerCaller = Annotated[Caller, Depends(owner_of_request)]
Admitted = Depends(admitted, scope="function")
AdmittedToSign = Depends(admitted_to_sign, scope="function")
