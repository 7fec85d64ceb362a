"""GET /v1/recordings (search) and /v1/recordings/{id}: status of recordings, newest first;
and their holds, which keep a recording whatever the retention rules say."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.api.context import Context
from services.api.deps import READ, STATUS, ContextDep
from services.kernel import keys
from services.kernel.contracts import (
    RECORDING_ID_PATTERN,
    TRANSACTION_ID_PATTERN,
    Hold,
    HoldIn,
    Recording,
    Status,
    utcnow,
)
from services.kernel.settings import CAMERA_ID_PATTERN
from services.stores.search import Cursor, CursorError, RecordingQuery, search

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["recordings"])

RecordingId = Annotated[str, Path(pattern=RECORDING_ID_PATTERN)]
MISSING: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown recording"},
    410: {"description": "Deleted by retention; the detail says when and why"},
}


@router.get("/recordings/{recording_id}", responses=MISSING, dependencies=[STATUS])
async def get_recording(recording_id: RecordingId, context: ContextDep) -> Recording:
    """One recording's status, reason, frames requested and saved, path and hold."""
    return await existing(context, recording_id)


@router.put("/recordings/{recording_id}/hold", responses=MISSING, dependencies=[READ])
async def hold_recording(recording_id: RecordingId, body: HoldIn, context: ContextDep) -> Recording:
    """Keep a recording whatever retention says (a case needs it), until released."""
    recording = await existing(context, recording_id)
    hold = Hold(reason=body.reason, by=body.by, at=utcnow())
    await _set_hold(context, recording, hold)
    log.info("recording %s held by %s: %s", recording_id, body.by, body.reason)
    return await existing(context, recording_id)


@router.delete("/recordings/{recording_id}/hold", responses=MISSING, dependencies=[READ])
async def release_recording(
    recording_id: RecordingId,
    context: ContextDep,
    reason: Annotated[str, Query(min_length=1, max_length=500, description="Why.")],
    by: Annotated[str, Query(min_length=1, max_length=100, description="Who asked.")],
) -> Recording:
    """Release a hold: the recording is subject to the retention rules again."""
    recording = await existing(context, recording_id)
    await _set_hold(context, recording, None, Hold(reason=reason, by=by, at=utcnow()))
    log.info("recording %s released by %s: %s", recording_id, by, reason)
    disk = await context.retention.disk()
    if disk is not None and disk.full:
        # Events are refused until space is freed: prune now, not at the next beat.
        await asyncio.to_thread(context.ingest.celery.send_task, keys.PRUNE_TASK, expires=60)
    return await existing(context, recording_id)


class RecordingFilters(BaseModel):
    """The query of GET /v1/recordings: every filter optional."""

    model_config = ConfigDict(extra="forbid")

    camera_id: str | None = Field(default=None, pattern=CAMERA_ID_PATTERN)
    transaction_id: str | None = Field(default=None, pattern=TRANSACTION_ID_PATTERN)
    status: Status | None = None
    since: AwareDatetime | None = Field(default=None, description="Event moment at or after.")
    until: AwareDatetime | None = Field(default=None, description="Event moment at or before.")
    hold: bool | None = Field(default=None, description="Only held (true) or not held (false).")
    cursor: str | None = Field(
        default=None, max_length=200, description="X-Next-Cursor of the previous page."
    )
    limit: int = Field(default=50, ge=1, le=500)
    before: AwareDatetime | None = Field(
        default=None, description="Received before (RFC 3339); prefer cursor."
    )


@router.get(
    "/recordings", responses={422: {"description": "A bad filter or cursor"}}, dependencies=[READ]
)
async def list_recordings(
    context: ContextDep,
    filters: Annotated[RecordingFilters, Query()],
    request: Request,
    response: Response,
) -> list[Recording]:
    """Recordings newest first, filtered. A page with more after it says where to go on in
    `X-Next-Cursor` (pass it as `cursor`) and in a `Link: <…>; rel="next"` header."""
    try:
        after = Cursor.decode(filters.cursor) if filters.cursor else None
    except CursorError as error:
        raise HTTPException(422, str(error)) from None
    settings = context.settings
    query = RecordingQuery(
        camera_id=filters.camera_id, transaction_id=filters.transaction_id,
        status=filters.status, since=filters.since, until=filters.until, hold=filters.hold,
        received_before=filters.before, cursor=after, limit=filters.limit,
        margin=timedelta(seconds=settings.max_event_age + settings.max_clock_skew + 1),
    )  # fmt: skip
    page = await search(context.state_store, query)
    if page.next_cursor is not None:
        token = page.next_cursor.encode()
        response.headers["X-Next-Cursor"] = token
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=token)}>; rel="next"'
    return page.recordings


async def existing(context: Context, recording_id: str) -> Recording:
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
        await existing(context, recording.recording_id)
    await asyncio.to_thread(
        context.ingest.celery.send_task, keys.HOLD_TASK, args=[recording.recording_id]
    )
