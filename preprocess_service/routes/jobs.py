"""Asynchronous jobs: a video accepted at once (202) and analyzed over its whole length by a worker;
its state, progress and partial timeline polled, or its outcome POSTed to a signed webhook.

Jobs belong to API keys as analyses do (owner_of_request: with keys configured, a caller without one
gets 401; with none configured, the one shared owner). An id of another owner's is 404, as if it
did not exist.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from preprocess_service.dependencies import OwnerDep, ServicesDep, UploadDep, multipart_body
from preprocess_service.errors import InvalidRequest
from preprocess_service.jobs.runner import job_view
from preprocess_service.jobs.webhooks import WebhookRefused, check_url
from preprocess_service.schemas import ErrorResponse

router = APIRouter(tags=["jobs"])
JOB_ID = "^[0-9a-f]{32}$"
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such job of this caller's"}
}
TRUE = {"1", "true", "yes", "on"}


class WebhookUrlRefused(InvalidRequest):
    code = "webhook_url_refused"


def _options(fields: dict[str, str], allow_private: bool) -> dict[str, Any]:
    """The form's text fields: ``webhook_url`` (checked now: a bad one is a 422, not a failed job
    later) and ``refresh`` (as /predict/'s query)."""
    options: dict[str, Any] = {"refresh": fields.get("refresh", "").strip().lower() in TRUE}
    if url := fields.get("webhook_url", "").strip():
        try:
            check_url(url, allow_private)
        except WebhookRefused as error:
            refused = WebhookUrlRefused(str(error))
            refused.code = error.code
            raise refused from error
        options["webhook_url"] = url
    return options


@router.post(
    "/jobs",
    status_code=202,
    openapi_extra=multipart_body(),
    responses={202: {"description": "accepted: poll GET /jobs/{id}"}, 429: {"model": ErrorResponse}},
)
async def submit_job(caller: OwnerDep, upload: UploadDep, services: ServicesDep) -> JSONResponse:
    """The same upload as /predict/ (form field ``file``), plus the text fields ``webhook_url`` and
    ``refresh``. Answers at once with the job's id; the analysis runs on a worker."""
    jobs = services.jobs()
    options = _options(upload.fields, services.settings.webhook_allow_private)
    record = await jobs.submit(caller, upload, options)
    body = {"id": record.id, "state": record.state, "href": f"/jobs/{record.id}"}
    return JSONResponse(body, status_code=202, headers={"Location": f"/jobs/{record.id}"})


@router.get("/jobs")
async def list_jobs(
    services: ServicesDep,
    caller: OwnerDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 20,
    state: Literal["queued", "running", "done", "failed", "cancelled"] | None = None,
) -> dict[str, Any]:
    """The caller's own jobs, newest first, without their results (GET /jobs/{id} has them)."""
    jobs = services.jobs()
    found = await asyncio.to_thread(jobs.store.page, caller.owner_filter, page, per_page, state)
    items = []
    for record in found.items:
        view = job_view(record)
        view.pop("result"), view.pop("timeline")
        items.append(view)
    return {"items": items, "total": found.total, "page": page, "per_page": per_page}


@router.get("/jobs/webhook-secret")
async def webhook_secret(services: ServicesDep, caller: OwnerDep) -> dict[str, str]:
    """The secret this API key's webhooks are signed with (HMAC-SHA256; docs/jobs.md says how a
    receiver verifies them, deepfake_client.webhooks.verify does it). Each key has its own."""
    assert caller.owner is not None
    return {"secret": services.jobs().webhook_secret(caller.owner), "header": "X-Deepfake-Signature"}


@router.get("/jobs/{job_id}", responses=NOT_FOUND)
async def get_job(
    services: ServicesDep, caller: OwnerDep, job_id: Annotated[str, Path(pattern=JOB_ID)]
) -> dict[str, Any]:
    """``state`` (queued, running, done, failed, cancelled), ``progress`` (0 to 1, never backwards),
    the timeline so far, and when done ``result``: the /predict/ answer, its receipt, and the timeline."""
    return await services.jobs().view(caller, job_id)


@router.delete("/jobs/{job_id}", responses=NOT_FOUND)
async def delete_job(
    services: ServicesDep, caller: OwnerDep, job_id: Annotated[str, Path(pattern=JOB_ID)]
) -> dict[str, Any]:
    """Queued or running: cancelled, its video deleted. Finished: erased, its answer with it."""
    return await services.jobs().delete(caller, job_id)
