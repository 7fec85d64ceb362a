"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.deps import ContextDep
from services.api.routes.cameras import describe_camera

router = APIRouter(tags=["health"])
metrics_router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready"}})
async def readyz(context: ContextDep) -> JSONResponse:
    """Ready when both stores answer, every camera sent a frame within `stale_after`, and the
    recordings disk is not full (under SCO_MIN_FREE_BYTES with nothing left to delete)."""
    problems: list[str] = []
    for name, client in (("frame store", context.frames), ("state store", context.state_store)):
        try:
            await client.ping()
        except Exception as error:  # any failure to answer means not ready
            problems.append(f"{name}: {error}")
    if not problems:
        for camera in context.settings.camera_ids:
            view = await describe_camera(context, camera)
            age = view.last_frame_age_s
            if age is None or age > context.settings.stale_after:
                problems.append(f"camera {camera}: no fresh frame (state {view.state})")
        disk = await context.retention.disk()
        if disk is not None and disk.full:
            problems.append(f"recordings disk: {disk.reason}")
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


@metrics_router.get("/metrics")
async def metrics(context: ContextDep) -> Response:
    """Prometheus metrics of the API (all its processes) and the stores it sees."""
    await context.gauges.refresh()
    return Response(generate_latest(context.metrics.serving), media_type=CONTENT_TYPE_LATEST)
