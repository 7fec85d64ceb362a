"""The FastAPI app factory."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from starlette.exceptions import HTTPException

from services.api.bodylimit import BodyLimit
from services.api.context import Context
from services.api.deps import READ, key_scopes
from services.api.routes import cameras, events, files, health, recordings
from services.api.routes.web import mount_page
from services.ingest.events import EventRefusedError
from services.kernel.outages import RETRY_AFTER_SECONDS, TRANSIENT, is_outage
from services.kernel.settings import Settings

log = logging.getLogger(__name__)

# A store outage, as Redis or as kombu (which wraps Redis's errors) reports it.
UNAVAILABLE = (*TRANSIENT, OperationalError)


def create_app(settings: Settings) -> FastAPI:
    """The API for the cameras and stores named in `settings`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = Context.build(settings)
        context.keys = key_scopes(settings)
        app.state.context = context
        # Everything built so far lives as long as the app: out of the collector's sight, a
        # full collection takes 2-3 ms instead of ~60 ms (the API's p99 under load).
        gc.collect()
        gc.freeze()
        yield
        await context.close()

    app = FastAPI(
        title="sco-recorder",
        summary="Records the camera frames just before each self-checkout event.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    for error in UNAVAILABLE:
        app.add_exception_handler(error, store_unavailable)
    app.add_exception_handler(redis.ResponseError, store_refused)  # type: ignore[arg-type]  # as below
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]  # as below
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]  # as below
    app.add_exception_handler(EventRefusedError, event_refused)  # type: ignore[arg-type]  # Starlette types handlers by Exception
    # Each route names the scope it needs (services/api/deps.py): INGEST, READ or STATUS.
    for module in (events, recordings, files, cameras):
        app.include_router(module.router)
    app.include_router(health.router)
    mount_page(app)
    app.include_router(
        health.metrics_router, dependencies=[] if settings.metrics_public else [READ]
    )
    return app


class EscapedJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: a lone surrogate echoed from a bad body
    cannot be encoded as UTF-8, but its escape (\\ud800) is plain ASCII."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 with pydantic's errors. FastAPI's own handler answers 500 when the body it echoes
    back is not UTF-8 (a body of raw bytes under a non-JSON content type): echo it escaped."""
    detail = jsonable_encoder(
        error.errors(), custom_encoder={bytes: lambda raw: raw.decode(errors="backslashreplace")}
    )
    return EscapedJSONResponse({"detail": detail}, status_code=422)


async def http_error(request: Request, error: HTTPException) -> Response:
    """FastAPI's answer, except for a body nested too deeply for Python's JSON parser: FastAPI
    says only 400 "error parsing the body"; it is a 422 with the reason, as other bad JSON."""
    if isinstance(error.__cause__, RecursionError):
        detail = "the body is nested too deeply to parse"
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, error)


async def event_refused(request: Request, error: EventRefusedError) -> JSONResponse:
    """An event that cannot be accepted: its HTTP status and reason."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    return JSONResponse({"detail": error.reason}, status_code=error.status, headers=headers)


async def store_unavailable(request: Request, error: Exception) -> JSONResponse:
    """A store is down: ask the client to come back rather than fail with a 500."""
    log.warning("%s %s: store unavailable: %s", request.method, request.url.path, error)
    return JSONResponse(
        {"detail": f"service unavailable: {type(error).__name__}; retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def store_refused(request: Request, error: redis.ResponseError) -> JSONResponse:
    """A store that is full (maxmemory) or read-only is unavailable for now: 503. Any other
    error reply is a bug of ours: a 500 that says nothing of the store."""
    if is_outage(error):
        return await store_unavailable(request, error)
    log.error("%s %s: %s", request.method, request.url.path, error, exc_info=error)
    return JSONResponse({"detail": "internal error"}, status_code=500)
