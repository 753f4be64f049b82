"""The display images (``DEEPFAKE_ARTIFACTS=1``): served to their owner (or an operator) only, with
the same access check as the history; another owner's image is as absent as a missing one."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import FileResponse

from preprocess_service import artifacts
from preprocess_service.dependencies import OwnerDep, ServicesDep
from preprocess_service.errors import NotFound
from preprocess_service.schemas import ErrorResponse

router = APIRouter(tags=["history"])


@router.get(
    artifacts.URL_PREFIX + "/{analysis_id}/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorResponse, "description": "no such image"}},
)
async def artifact(analysis_id: str, name: str, services: ServicesDep, caller: OwnerDep) -> FileResponse:
    """A display frame or face crop of one of the caller's analyses (``frame_<i>.jpg``, ``face_<i>.jpg``)."""
    settings = services.settings
    path = None
    if settings.artifacts:
        path = await asyncio.to_thread(
            artifacts.find_image, settings.artifacts_dir, caller.owner_filter, analysis_id, name
        )
    if path is None:
        raise NotFound("no such image of this caller's analyses")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})
