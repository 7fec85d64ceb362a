"""GET /v1/recordings and /v1/recordings/{id}: status of recordings, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import AwareDatetime

from services.api.deps import ContextDep
from services.kernel.contracts import RECORDING_ID_PATTERN, Recording
from services.kernel.settings import CAMERA_ID_PATTERN

router = APIRouter(prefix="/v1", tags=["recordings"])


@router.get("/recordings/{recording_id}", responses={404: {"description": "Unknown recording"}})
async def get_recording(
    recording_id: Annotated[str, Path(pattern=RECORDING_ID_PATTERN)], context: ContextDep
) -> Recording:
    """One recording's status, reason, frames requested and saved, and path."""
    recording = await context.store.get(recording_id)
    if recording is None:
        raise HTTPException(404, f"no recording {recording_id}")
    return recording


@router.get("/recordings")
async def list_recordings(
    context: ContextDep,
    camera_id: Annotated[str | None, Query(pattern=CAMERA_ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        AwareDatetime | None, Query(description="Received before (RFC 3339, with its offset).")
    ] = None,
) -> list[Recording]:
    """Recordings newest first; page with `before` = the last one's received_at."""
    return await context.store.newest(camera_id, limit, before)
