"""GET /v1/recordings and /v1/recordings/{id}: status of recordings, newest first; and their
holds, which keep a recording whatever the retention rules say."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import AwareDatetime

from services.api.context import Context
from services.api.deps import ContextDep
from services.kernel import keys
from services.kernel.contracts import RECORDING_ID_PATTERN, Hold, HoldIn, Recording, utcnow
from services.kernel.settings import CAMERA_ID_PATTERN

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["recordings"])

RecordingId = Annotated[str, Path(pattern=RECORDING_ID_PATTERN)]
MISSING: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown recording"},
    410: {"description": "Deleted by retention; the detail says when and why"},
}


@router.get("/recordings/{recording_id}", responses=MISSING)
async def get_recording(recording_id: RecordingId, context: ContextDep) -> Recording:
    """One recording's status, reason, frames requested and saved, path and hold."""
    return await _existing(context, recording_id)


@router.put("/recordings/{recording_id}/hold", responses=MISSING)
async def hold_recording(recording_id: RecordingId, body: HoldIn, context: ContextDep) -> Recording:
    """Keep a recording whatever retention says (a case needs it), until released."""
    recording = await _existing(context, recording_id)
    hold = Hold(reason=body.reason, by=body.by, at=utcnow())
    await _set_hold(context, recording, hold)
    log.info("recording %s held by %s: %s", recording_id, body.by, body.reason)
    return await _existing(context, recording_id)


@router.delete("/recordings/{recording_id}/hold", responses=MISSING)
async def release_recording(
    recording_id: RecordingId,
    context: ContextDep,
    reason: Annotated[str, Query(min_length=1, max_length=500, description="Why.")],
    by: Annotated[str, Query(min_length=1, max_length=100, description="Who asked.")],
) -> Recording:
    """Release a hold: the recording is subject to the retention rules again."""
    recording = await _existing(context, recording_id)
    await _set_hold(context, recording, None, Hold(reason=reason, by=by, at=utcnow()))
    log.info("recording %s released by %s: %s", recording_id, by, reason)
    disk = await context.retention.disk()
    if disk is not None and disk.full:
        # Events are refused until space is freed: prune now, not at the next beat.
        await asyncio.to_thread(context.ingest.celery.send_task, keys.PRUNE_TASK, expires=60)
    return await _existing(context, recording_id)


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


async def _existing(context: Context, recording_id: str) -> Recording:
    """The recording, or 410 with why it was deleted, or 404."""
    recording = await context.store.get(recording_id)
    if recording is not None:
        return recording
    gone = await context.retention.gone(recording_id)
    if gone is not None:
        raise HTTPException(410, gone.message)
    raise HTTPException(404, f"no recording {recording_id}")


async def _set_hold(
    context: Context, recording: Recording, hold: Hold | None, released: Hold | None = None
) -> None:
    """Store the hold (or its release), then have a worker show it in metadata.json."""
    result = await context.retention.hold(
        recording.recording_id, recording.camera_id, hold, released
    )
    if result in ("gone", "unknown"):  # deleted between the read and the hold
        await _existing(context, recording.recording_id)
    await asyncio.to_thread(
        context.ingest.celery.send_task, keys.HOLD_TASK, args=[recording.recording_id]
    )
