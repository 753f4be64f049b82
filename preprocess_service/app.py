"""create_app(settings): assemble routers, error handlers and the lifespan that loads things once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from preprocess_service import tracing
from preprocess_service.access import policy_for
from preprocess_service.errors import InvalidRequest, ServiceError
from preprocess_service.inference import InferenceBackend
from preprocess_service.logs import RequestIds
from preprocess_service.metrics import Metrics, RequestCounter
from preprocess_service.routes import artifacts as artifact_routes
from preprocess_service.routes import health, history, integrity, jobs, page, predict
from preprocess_service.schemas import ErrorResponse
from preprocess_service.security_headers import SecurityHeaders, headers_for
from preprocess_service.services import Services
from preprocess_service.settings import Settings, get_settings

log = logging.getLogger("deepfake")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return _error(error.status_code, error.code, error.message, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """404, 405 and the like from the framework, in the same body as every other error."""
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return _error(error.status_code, code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        return _error(InvalidRequest.status_code, InvalidRequest.code, where)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return _error(
            500, "internal_error", "the service failed unexpectedly; see its log", headers_for(request.url.path)
        )


def create_app(settings: Settings | None = None, backend: InferenceBackend | None = None) -> FastAPI:
    """The application: routers, error handlers, middleware, and a lifespan that opens ``Services``.
    ``backend``: an inference backend made by the caller (the fast tests' fake); else the settings'."""
    settings = settings or get_settings()
    metrics = Metrics()
    access = policy_for(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Services.open(settings, metrics, access, backend) as services:
            app.state.services = services
            yield

    app = FastAPIOffline(  # Swagger UI and ReDoc served from the installed package, no CDN
        redoc_url=None,  # routes/page.py serves /redoc: the bundle without its logo from Redocly's CDN
        title="Deepfake detection",
        description="Upload a short video: FAKE or REAL, with confidence, per-frame evidence and a signature.",
        version="0.1.0",
        lifespan=lifespan,
        responses={code: {"model": ErrorResponse} for code in (400, 401, 408, 413, 415, 422, 429, 503)},
    )
    _install_error_handlers(app)
    app.include_router(predict.router)
    app.include_router(integrity.router)
    app.include_router(health.router)
    app.include_router(history.router)
    app.include_router(jobs.router)
    app.include_router(artifact_routes.router)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    app.add_middleware(RequestCounter, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    if tracing.enabled(settings):  # innermost of the middleware here: a server span per request, with its id
        tracing.configure(settings)
        tracing.instrument_app(app)
    app.add_middleware(SecurityHeaders)  # every answer gets the headers, errors included
    app.add_middleware(RequestIds)  # outermost: every log line of a request carries its id
    return app
