"""Accepting an event, whichever way it arrived: validate, pin its window, queue its job.

HTTP and MQTT both call `Ingest.accept`, so both get the same validation, idempotency and
recordings.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import Celery

from services.common import keys
from services.common.contracts import (
    EventAccepted,
    EventIn,
    Recording,
    RecordingJob,
    Status,
    to_us,
    utcnow,
)
from services.common.framebuffer import FrameBuffer, pin_member
from services.common.recordings import RecordingStore
from services.common.settings import Settings

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class EventRefusedError(Exception):
    """An event that cannot be accepted; nothing was written. Status is the HTTP one."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Accepted:
    """The answer to an accepted event, and whether it repeated an earlier one."""

    answer: EventAccepted
    camera_id: str
    duplicate: bool


@dataclass
class Ingest:
    """Everything accepting an event touches."""

    settings: Settings
    store: RecordingStore
    buffers: dict[str, FrameBuffer]
    celery: Celery

    def accept(self, event: EventIn, idempotency_key: str | None) -> Accepted:
        """Create the event's recording, pin its frames and queue its job; or refuse it."""
        recording, frames_after = self._new_recording(event)
        if self.store.queued() >= self.settings.max_queued:
            raise EventRefusedError(
                503, "too many queued recordings; retry later", RETRY_AFTER_SECONDS
            )
        owner = self.store.create(recording, idempotency_key, self.settings.idempotency_ttl)
        if owner != recording.recording_id:
            existing = self.store.get(owner)
            current = existing.status if existing else Status.QUEUED
            return Accepted(_answer(owner, current), recording.camera_id, duplicate=True)
        job: RecordingJob | None = None
        try:
            job = self._pin(event, recording, frames_after)
            self.celery.send_task(
                keys.RECORD_TASK,
                args=[job.model_dump(mode="json")],
                task_id=recording.recording_id,
                queue=keys.RECORD_QUEUE,
                retry=False,
            )
        except Exception:
            self._undo(recording, idempotency_key, job)
            raise
        answer = _answer(recording.recording_id, Status.QUEUED)
        return Accepted(answer, recording.camera_id, duplicate=False)

    def _new_recording(self, event: EventIn) -> tuple[Recording, int]:
        settings = self.settings
        camera_id = self._camera_of(event)
        frames_before = event.frames_before or settings.frames
        if frames_before > settings.frames:
            raise EventRefusedError(
                422,
                f"frames_before must be at most {settings.frames}, the buffer length (SCO_FRAMES)",
            )
        if event.frames_after > settings.max_frames_after:
            raise EventRefusedError(
                422, f"frames_after must be at most {settings.max_frames_after}"
            )
        received_at = utcnow()
        moment = self._moment(event, received_at)
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

    def _trusted(self, event: EventIn) -> bool:
        return self.settings.trust_event_time and event.event_time is not None

    def _moment(self, event: EventIn, received_at: datetime) -> datetime:
        """Receipt time, or the cashier system's event_time when trusted and plausible."""
        if not self._trusted(event) or event.event_time is None:
            return received_at
        moment = event.event_time
        if moment > received_at + timedelta(seconds=self.settings.max_clock_skew):
            raise EventRefusedError(422, "event_time is in the future beyond max_clock_skew")
        if moment < received_at - timedelta(seconds=self.settings.max_event_age):
            raise EventRefusedError(
                422, "event_time is older than max_event_age: its frames are no longer buffered"
            )
        return moment

    def _camera_of(self, event: EventIn) -> str:
        cameras = self.settings.camera_ids
        if event.camera_id is None:
            if len(cameras) == 1:
                return cameras[0]
            raise EventRefusedError(
                422, f"camera_id is required; configured cameras: {', '.join(cameras)}"
            )
        if event.camera_id not in cameras:
            raise EventRefusedError(
                422,
                f"unknown camera {event.camera_id!r}; configured cameras: {', '.join(cameras)}",
            )
        return event.camera_id

    def _pin(self, event: EventIn, recording: Recording, frames_after: int) -> RecordingJob:
        deadline_ms = int((recording.received_at.timestamp() + self.settings.max_delay) * 1000)
        member = pin_member(recording.recording_id, deadline_ms)
        event_us = to_us(recording.event_time)
        frames_before = recording.frames_requested - frames_after
        pin = self.buffers[recording.camera_id].pin(event_us, frames_before, member)
        return RecordingJob(
            recording_id=recording.recording_id,
            camera_id=recording.camera_id,
            transaction_id=recording.transaction_id,
            event_us=event_us,
            event_time_source="cashier" if self._trusted(event) else "received",
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
        self, recording: Recording, idempotency_key: str | None, job: RecordingJob | None
    ) -> None:
        """Best effort: an event we refuse must leave no recording and no pin behind."""
        try:
            self.store.discard(recording, idempotency_key)
            if job is not None:
                self.buffers[recording.camera_id].release(job.pin_member)
        except Exception:  # the store that failed may still be down; pins expire anyway
            log.warning("could not undo recording %s", recording.recording_id, exc_info=True)


def _answer(recording_id: str, current: Status) -> EventAccepted:
    return EventAccepted(
        recording_id=recording_id,
        status=current,
        status_url=f"/v1/recordings/{recording_id}",
    )
