"""What routes get through ``Depends``, all named by one rule: ``<What>Dep``, an ``Annotated`` type
a route declares as a parameter (as FastAPI's full-stack template does).

Callers are declared first in a route's parameters: FastAPI resolves dependencies in order, so a
caller is authorized, within its rate and given an analysis slot before a byte of its upload is
read. ``scope="function"``: the slot is released and the temporary file deleted when the route
returns, before the answer is sent, so a client that has its answer never sees either still held.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from preprocess_service.access import Caller
from preprocess_service.errors import Unauthorized
from preprocess_service.services import Services
from preprocess_service.uploads import ReadLimits, Upload, receive_upload


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def admitted(request: Request, services: ServicesDep) -> AsyncIterator[Caller]:
    """Authorized (where keys are required), within the caller's rate, and within the slots."""
    caller = services.access.admit(request)
    async with services.admission.slot():
        yield caller


async def admitted_to_sign(request: Request, services: ServicesDep) -> AsyncIterator[Caller]:
    """Signing needs a key whenever keys are configured, and has its own, lower rate."""
    caller = services.access.admit(request, signing=True)
    async with services.admission.slot():
        yield caller


async def owner_of_request(request: Request, services: ServicesDep) -> Caller:
    """Stored things (history, stats, images): a caller who owns some. Where keys are configured,
    a caller without one owns nothing here and gets 401, whether keys are required or not."""
    caller = services.access.admit(request)
    if caller.owner is None:
        raise Unauthorized("the history belongs to API keys: send one (X-API-Key or Authorization: Bearer)")
    return caller


async def received_upload(request: Request, services: ServicesDep) -> AsyncIterator[Upload]:
    settings = services.settings
    limits = ReadLimits(settings.upload_idle_timeout_s, settings.upload_min_rate_kib_s * 1024)
    async with receive_upload(request, settings.max_upload_bytes, settings.upload_dir, limits) as upload:
        yield upload


AdmittedDep = Annotated[Caller, Depends(admitted, scope="function")]
SigningDep = Annotated[Caller, Depends(admitted_to_sign, scope="function")]
OwnerDep = Annotated[Caller, Depends(owner_of_request)]
UploadDep = Annotated[Upload, Depends(received_upload, scope="function")]


def multipart_body(*text_fields: str) -> dict:
    """OpenAPI description of the streamed multipart body (it is parsed by hand, see uploads.py)."""
    properties = {"file": {"type": "string", "format": "binary"}}
    properties.update({name: {"type": "string"} for name in text_fields})
    schema = {"type": "object", "properties": properties, "required": ["file", *text_fields]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}
