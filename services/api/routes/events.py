"""POST /v1/events: validate, fix the event's window at receipt, queue the job, answer 202.
GET /v1/events/{event_id}: a lane event's recordings, one per camera."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Response, status

from services.api.deps import INGEST, STATUS, ContextDep
from services.kernel import keys
from services.kernel.contracts import (
    RECORDING_ID_PATTERN,
    TRANSACTION_ID_PATTERN,
    EventAccepted,
    EventIn,
    LaneEvent,
    LaneEventAccepted,
    Recording,
    status_of_all,
)

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[INGEST],
    responses={
        413: {"description": "Body too large"},
        422: {"description": "Invalid event"},
        503: {"description": "Overloaded or a store is down; retry later"},
    },
)
async def post_event(
    event: EventIn,
    context: ContextDep,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(pattern=TRANSACTION_ID_PATTERN, max_length=128)
    ] = None,
) -> EventAccepted | LaneEventAccepted:
    """Accept an event: its frames are pinned now, the recording is written by a worker.
    An event naming `lane_id` records every camera of the lane at the same moment."""
    key = idempotency_key or event.transaction_id
    with context.metrics.accept_seconds.time():
        if event.lane_id is not None:
            lane = await context.ingest.accept_lane(event, key)
            answer: EventAccepted | LaneEventAccepted = lane.answer
            duplicate, cameras = lane.duplicate, [r.camera_id for r in lane.answer.recordings]
        else:
            accepted = await context.ingest.accept(event, key)
            answer, duplicate, cameras = accepted.answer, accepted.duplicate, [accepted.camera_id]
    if duplicate:
        context.metrics.duplicates.inc()
    else:
        for camera in cameras:
            context.metrics.accepted.labels(camera).inc()
    response.headers["Location"] = answer.status_url
    return answer


@router.get(
    "/events/{event_id}",
    dependencies=[STATUS],
    responses={404: {"description": "Unknown lane event (or all its recordings deleted)"}},
)
async def get_event(
    event_id: Annotated[str, Path(pattern=RECORDING_ID_PATTERN)], context: ContextDep
) -> LaneEvent:
    """A lane event: its status (final once every camera's recording is) and its recordings."""
    record = await context.ingest.store.get_event(event_id)
    if record is None:
        raise HTTPException(404, f"no lane event {event_id}")
    recordings: list[Recording] = []
    deleted: list[str] = []
    for recording_id in record.recordings.values():
        recording = await context.ingest.store.get(recording_id)
        if recording is not None:
            recordings.append(recording)
        elif await context.state_store.exists(keys.gone(recording_id)):
            deleted.append(recording_id)
    return LaneEvent(
        event_id=record.event_id, lane_id=record.lane_id,
        transaction_id=record.transaction_id, received_at=record.received_at,
        status=status_of_all([recording.status for recording in recordings]),
        recordings=recordings, deleted=deleted,
    )  # fmt: skip
