"""POST /v1/events: validate, fix the event's window at receipt, queue the job, answer 202."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status

from services.api.context import Context
from services.api.deps import ContextDep
from services.common import keys
from services.common.contracts import (
    TRANSACTION_ID_PATTERN,
    EventAccepted,
    EventIn,
    Recording,
    RecordingJob,
    Status,
    to_us,
    utcnow,
)
from services.common.framebuffer import pin_member
from services.common.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["events"])

RETRY_AFTER = {"Retry-After": "5"}


class Refused(HTTPException):
    """An event that cannot be accepted, with the reason; nothing was written."""


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        413: {"description": "Body too large"},
        422: {"description": "Invalid event"},
        503: {"description": "Overloaded or a store is down; retry later"},
    },
)
def post_event(
    event: EventIn,
    context: ContextDep,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(pattern=TRANSACTION_ID_PATTERN, max_length=128)
    ] = None,
) -> EventAccepted:
    """Accept an event: its frames are pinned now, the recording is written by a worker."""
    with context.metrics.accept_seconds.time():
        accepted = accept_event(context, event, idempotency_key or event.transaction_id)
    response.headers["Location"] = accepted.status_url
    return accepted


def accept_event(context: Context, event: EventIn, idempotency_key: str | None) -> EventAccepted:
    """The whole of accepting an event, shared by every way events arrive."""
    recording, frames_after = _new_recording(context, event)
    if context.store.queued() >= context.settings.max_queued:
        raise Refused(503, "too many queued recordings; retry later", headers=RETRY_AFTER)
    owner = context.store.create(recording, idempotency_key, context.settings.idempotency_ttl)
    if owner != recording.recording_id:
        context.metrics.duplicates.inc()
        existing = context.store.get(owner)
        return _answer(owner, existing.status if existing else Status.QUEUED)
    job: RecordingJob | None = None
    try:
        job = _pin(context, event, recording, frames_after)
        context.celery.send_task(
            keys.RECORD_TASK,
            args=[job.model_dump(mode="json")],
            task_id=recording.recording_id,
            queue=keys.RECORD_QUEUE,
            retry=False,
        )
    except Exception:
        _undo(context, recording, idempotency_key, job)
        raise
    context.metrics.accepted.labels(recording.camera_id).inc()
    return _answer(recording.recording_id, Status.QUEUED)


def _new_recording(context: Context, event: EventIn) -> tuple[Recording, int]:
    settings = context.settings
    camera_id = _camera_of(context, event)
    frames_before = event.frames_before or settings.frames
    if frames_before > settings.frames:
        raise Refused(
            422, f"frames_before must be at most {settings.frames}, the buffer length (SCO_FRAMES)"
        )
    if event.frames_after > settings.max_frames_after:
        raise Refused(422, f"frames_after must be at most {settings.max_frames_after}")
    received_at = utcnow()
    moment = received_at
    if _trusted(settings, event) and event.event_time is not None:
        moment = event.event_time
        if moment > received_at + timedelta(seconds=settings.max_clock_skew):
            raise Refused(422, "event_time is in the future beyond max_clock_skew")
        if moment < received_at - timedelta(seconds=settings.max_event_age):
            raise Refused(
                422, "event_time is older than max_event_age: its frames are no longer buffered"
            )
    recording = Recording(
        recording_id=uuid.uuid4().hex,
        camera_id=camera_id,
        transaction_id=event.transaction_id,
        status=Status.QUEUED,
        frames_requested=frames_before + event.frames_after,
        event_time=moment,
        received_at=received_at,
        updated_at=received_at,
    )
    return recording, event.frames_after


def _trusted(settings: Settings, event: EventIn) -> bool:
    return settings.trust_event_time and event.event_time is not None


def _camera_of(context: Context, event: EventIn) -> str:
    cameras = context.settings.camera_ids
    if event.camera_id is None:
        if len(cameras) == 1:
            return cameras[0]
        raise Refused(422, f"camera_id is required; configured cameras: {', '.join(cameras)}")
    if event.camera_id not in cameras:
        raise Refused(
            422, f"unknown camera {event.camera_id!r}; configured cameras: {', '.join(cameras)}"
        )
    return event.camera_id


def _pin(context: Context, event: EventIn, recording: Recording, frames_after: int) -> RecordingJob:
    settings = context.settings
    deadline_ms = int((recording.received_at.timestamp() + settings.max_delay) * 1000)
    member = pin_member(recording.recording_id, deadline_ms)
    event_us = to_us(recording.event_time)
    frames_before = recording.frames_requested - frames_after
    pin = context.buffers[recording.camera_id].pin(event_us, frames_before, member)
    return RecordingJob(
        recording_id=recording.recording_id,
        camera_id=recording.camera_id,
        transaction_id=recording.transaction_id,
        event_us=event_us,
        event_time_source="cashier" if _trusted(settings, event) else "received",
        event_time_sent=event.event_time.isoformat() if event.event_time else None,
        received_at=recording.received_at,
        frames_before=frames_before,
        frames_after=frames_after,
        pinned_first_id=pin.first_id,
        pinned_count=pin.count,
        buffered_at_pin=pin.buffered,
        pin_member=member,
        pin_deadline_ms=deadline_ms,
        metadata=event.metadata,
    )


def _undo(
    context: Context, recording: Recording, idempotency_key: str | None, job: RecordingJob | None
) -> None:
    """Best effort: an event we answer 503 must leave no recording and no pin behind."""
    try:
        context.store.discard(recording, idempotency_key)
        if job is not None:
            context.buffers[recording.camera_id].release(job.pin_member)
    except Exception:  # the store that failed may still be down; pins expire anyway
        log.warning("could not undo recording %s", recording.recording_id, exc_info=True)


def _answer(recording_id: str, current: Status) -> EventAccepted:
    return EventAccepted(
        recording_id=recording_id,
        status=current,
        status_url=f"/v1/recordings/{recording_id}",
    )
