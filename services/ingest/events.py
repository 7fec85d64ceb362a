"""Accepting an event, whichever way it arrived: validate, pin its window, queue its job.

HTTP and MQTT both await `Ingest.accept`, so both get the same validation, idempotency and
recordings.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.kernel.contracts import (
    EVENT_HOLD_BY,
    DiskStatus,
    EventAccepted,
    EventIn,
    Hold,
    LaneEventAccepted,
    LaneRecording,
    Recording,
    RecordingJob,
    Status,
    from_us,
    status_of_all,
    to_us,
    utcnow,
)
from services.kernel.outages import RETRY_AFTER_SECONDS
from services.kernel.settings import Settings
from services.stores.framebuffer import FramePins, Pin, PinRequest, pin_together
from services.stores.recordings import AsyncRecordingStore, LaneEventRecord, QueueFullError
from services.stores.retention import AsyncRetentionStore
from services.stores.taskqueue import make_celery, record_message

log = logging.getLogger(__name__)

DISK_STATUS_SECONDS = 1.0  # how stale the disk status the ingest admits events by may be


def store_clients(settings: Settings, timeout: float) -> tuple[aioredis.Redis, aioredis.Redis]:
    """asyncio clients on the frame store and the state store, with socket timeouts."""
    # One immediate retry: after a store restarts, a pooled connection is found dead only
    # when used, and redis.asyncio (unlike the sync client) does not check it beforehand.
    frames, state_store = (
        aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), retries=1),
        )
        for url in (settings.frame_store_url, settings.state_store_url)
    )
    return frames, state_store


def make_ingest(
    settings: Settings, frames: aioredis.Redis, state_store: aioredis.Redis, *, owns: bool
) -> Ingest:
    """An Ingest on these clients; `owns`: closing it closes them."""
    pins = {camera: FramePins(frames, camera) for camera in settings.camera_ids}
    store = AsyncRecordingStore(state_store)
    disk = DiskGate(AsyncRetentionStore(state_store), retry_after=round(settings.prune_interval))
    clients = (frames, state_store) if owns else ()
    return Ingest(settings, store, pins, make_celery(settings), disk, clients=clients)


@dataclass
class DiskGate:
    """Refuses events while the recordings disk is under its floor with nothing left to
    delete, as the last prune pass found it: such an event could only fail. The status is
    read at most once a second, so accepting an event costs no extra round trip."""

    store: AsyncRetentionStore
    retry_after: int
    clock: Callable[[], float] = time.monotonic
    _status: DiskStatus | None = None
    _read_at: float = -math.inf

    async def status(self) -> DiskStatus | None:
        """The last prune pass's disk status (None: no pass ran lately)."""
        if self.clock() - self._read_at >= DISK_STATUS_SECONDS:
            self._status = await self.store.disk()
            self._read_at = self.clock()
        return self._status

    async def check(self) -> None:
        """Raise EventRefusedError (503) while the disk is full."""
        status = await self.status()
        if status is not None and status.full:
            raise EventRefusedError(
                503, f"not recording: {status.reason}", max(RETRY_AFTER_SECONDS, self.retry_after)
            )


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


@dataclass(frozen=True)
class LaneAccepted:
    """The answer to an accepted lane event, and whether it repeated an earlier one."""

    answer: LaneEventAccepted
    duplicate: bool


@dataclass
class Ingest:
    """Everything accepting an event touches."""

    settings: Settings
    store: AsyncRecordingStore
    pins: dict[str, FramePins]
    celery: Celery
    disk: DiskGate
    clients: tuple[aioredis.Redis, ...] = ()

    async def accept(self, event: EventIn, idempotency_key: str | None) -> Accepted:
        """Pin the event's frames, then create its recording and queue its job; or refuse it.

        Two round trips: the pin script on the frame store, then one script on the state
        store that claims the idempotency key, creates the recording and pushes the job.
        """
        assert event.lane_id is None, "a lane event goes to accept_lane"
        camera_id = self._camera_of(event)
        (job,) = await self._pin(event, [camera_id])
        recording, message = self._created(job)
        owner = await self._create_or_release(
            [job],
            self.store.create(
                recording, idempotency_key, self.settings.idempotency_ttl,
                job_message=message, max_queued=self.settings.max_queued,
            ),
        )  # fmt: skip
        if owner != recording.recording_id:
            await self._release([job])
            existing = await self.store.get(owner)
            current = existing.status if existing else Status.QUEUED
            return Accepted(_answer(owner, current), camera_id, duplicate=True)
        return Accepted(_answer(owner, Status.QUEUED), camera_id, duplicate=False)

    async def accept_lane(self, event: EventIn, idempotency_key: str | None) -> LaneAccepted:
        """Record every camera of the event's lane at one moment: one pin script on the frame
        store for all of them, then one script on the state store that claims the key and
        creates every recording and job (or nothing)."""
        lane_id, cameras = self._lane_of(event)
        event_id = uuid.uuid4().hex
        jobs = await self._pin(event, cameras, event_id=event_id, lane_id=lane_id)
        record = LaneEventRecord(
            event_id=event_id, lane_id=lane_id, transaction_id=event.transaction_id,
            received_at=jobs[0].received_at,
            recordings={job.camera_id: job.recording_id for job in jobs},
        )  # fmt: skip
        owner = await self._create_or_release(
            jobs,
            self.store.create_event(
                record, [self._created(job) for job in jobs], idempotency_key,
                self.settings.idempotency_ttl, max_queued=self.settings.max_queued,
            ),
        )  # fmt: skip
        if owner == event_id:
            return LaneAccepted(await self.lane_answer(record), duplicate=False)
        await self._release(jobs)
        existing = await self.store.get_event(owner)
        if existing is None:  # expired since: its recordings are gone too
            raise EventRefusedError(409, f"this event was recorded as {owner}, since deleted")
        return LaneAccepted(await self.lane_answer(existing), duplicate=True)

    async def _pin(
        self, event: EventIn, cameras: list[str], *, event_id: str | None = None,
        lane_id: str | None = None,
    ) -> list[RecordingJob]:  # fmt: skip
        """Check the event against each camera and the disk, then pin every camera's window
        at one moment, in one script on the frame store; a job per camera."""
        asked = {camera: self._frames_before(event, camera) for camera in cameras}
        await self.disk.check()
        trusted = self._trusted_moment(event, utcnow())
        windows = [
            PinRequest(self.pins[camera], uuid.uuid4().hex, frames_before, event.frames_after)
            for camera, frames_before in asked.items()
        ]
        pins = await pin_together(
            windows, moment_us=to_us(trusted) if trusted else None,
            lifetime_ms=round(self.settings.pin_ttl * 1000),
        )  # fmt: skip
        return [
            _job_of(event, window, pin, trusted, event_id=event_id, lane_id=lane_id)
            for window, pin in zip(windows, pins, strict=True)
        ]

    def _created(self, job: RecordingJob) -> tuple[Recording, str]:
        """The recording a job starts, and the job's message for the queue."""
        message = record_message(self.celery, job.model_dump(mode="json"), job.recording_id)
        return _recording_of(job, self._deadline_of(job)), message

    async def _create_or_release(
        self, jobs: list[RecordingJob], creating: Coroutine[Any, Any, str]
    ) -> str:
        """Run the state store's create script; on any failure release the jobs' pins, and
        answer a full queue with 503."""
        try:
            return await creating
        except Exception as error:
            await self._release(jobs)
            if isinstance(error, QueueFullError):
                raise EventRefusedError(
                    503, "too many queued recordings; retry later", RETRY_AFTER_SECONDS
                ) from error
            raise

    async def lane_answer(self, record: LaneEventRecord) -> LaneEventAccepted:
        """A lane event with each recording's current status."""
        recordings = []
        for camera_id, recording_id in record.recordings.items():
            current = await self.store.get(recording_id)
            status = current.status if current else Status.QUEUED
            recordings.append(
                LaneRecording(
                    camera_id=camera_id,
                    recording_id=recording_id,
                    status=status,
                    status_url=f"/v1/recordings/{recording_id}",
                )
            )
        return LaneEventAccepted(
            event_id=record.event_id, lane_id=record.lane_id,
            status=status_of_all([recording.status for recording in recordings]),
            status_url=f"/v1/events/{record.event_id}", recordings=recordings,
        )  # fmt: skip

    async def close(self) -> None:
        """Release the store connections."""
        for client in self.clients:
            await client.aclose()

    def _frames_before(self, event: EventIn, camera_id: str) -> int:
        """The event's frames_before for one camera, within the settings' limits."""
        settings = self.settings
        frames = settings.frames_of(camera_id)
        frames_before = event.frames_before or frames
        if frames_before > frames:
            raise EventRefusedError(
                422, f"frames_before must be at most {frames}, camera {camera_id}'s buffer length"
            )
        if event.frames_after > settings.max_frames_after:
            raise EventRefusedError(
                422, f"frames_after must be at most {settings.max_frames_after}"
            )
        return frames_before

    def _lane_of(self, event: EventIn) -> tuple[str, list[str]]:
        lanes = self.settings.lanes
        assert event.lane_id is not None, "a lane event"
        if event.lane_id not in lanes:
            configured = ", ".join(lanes) or "none (describe them in the store file's [lanes])"
            raise EventRefusedError(
                422, f"unknown lane {event.lane_id!r}; configured lanes: {configured}"
            )
        return event.lane_id, lanes[event.lane_id]

    def _trusted_moment(self, event: EventIn, now: datetime) -> datetime | None:
        """The cashier system's event_time when trusted and plausible; None means receipt."""
        if not self.settings.trust_event_time or event.event_time is None:
            return None
        moment = event.event_time
        if moment > now + timedelta(seconds=self.settings.max_clock_skew):
            raise EventRefusedError(422, "event_time is in the future beyond max_clock_skew")
        if moment < now - timedelta(seconds=self.settings.max_event_age):
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

    def _deadline_of(self, job: RecordingJob) -> datetime:
        """Past this, no worker can still be working on the job: its pin has expired and a
        run that started just before could not last longer than the time limit."""
        seconds = self.settings.pin_ttl + self.settings.task_time_limit
        return job.received_at + timedelta(seconds=seconds)

    async def _release(self, jobs: list[RecordingJob]) -> None:
        """Best effort: the pins of an event not accepted after all (they would expire)."""
        for job in jobs:
            try:
                await self.pins[job.camera_id].release(job.pin_member)
            except Exception:  # the frame store may be the thing that is down
                log.warning("could not release the pin of %s", job.recording_id, exc_info=True)


def _job_of(
    event: EventIn, window: PinRequest, pin: Pin, trusted: datetime | None, *,
    event_id: str | None, lane_id: str | None,
) -> RecordingJob:  # fmt: skip
    """The job of one pinned window. The pin script stamped the moment of receipt itself:
    the stream holds about N frames, so a frame arriving between a receipt stamped here and
    the pin would trim the window's oldest frame. A trusted event_time is in the past, where
    the buffer keeps max_event_age of frames beyond N."""
    received_at = from_us(pin.received_us)
    return RecordingJob(
        recording_id=window.recording_id,
        camera_id=window.pins.camera_id,
        event_id=event_id,
        lane_id=lane_id,
        transaction_id=event.transaction_id,
        event_us=to_us(trusted) if trusted else pin.received_us,
        event_time_source="cashier" if trusted else "received",
        event_time_sent=event.event_time.isoformat() if event.event_time else None,
        received_at=received_at,
        frames_before=window.frames_before,
        frames_after=window.frames_after,
        pinned_first_id=pin.first_id,
        pinned_count=pin.count,
        buffered_at_pin=pin.buffered,
        pin_member=pin.member,
        pin_deadline_ms=pin.deadline_ms,
        metadata=event.metadata,
        hold=Hold(reason="held from its event", by=EVENT_HOLD_BY, at=received_at)
        if event.hold
        else None,
    )


def _recording_of(job: RecordingJob, deadline: datetime) -> Recording:
    """The recording a job starts, as the API lists it."""
    return Recording(
        recording_id=job.recording_id,
        camera_id=job.camera_id,
        event_id=job.event_id,
        lane_id=job.lane_id,
        transaction_id=job.transaction_id,
        status=Status.QUEUED,
        frames_requested=job.frames_before + job.frames_after,
        event_time=from_us(job.event_us),
        received_at=job.received_at,
        updated_at=job.received_at,
        deadline=deadline,
        hold=job.hold,
        metadata=job.metadata,
    )


def _answer(recording_id: str, current: Status) -> EventAccepted:
    return EventAccepted(
        recording_id=recording_id,
        status=current,
        status_url=f"/v1/recordings/{recording_id}",
    )
