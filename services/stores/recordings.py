"""Recording state in the durable store: created at receipt, moved to a final status by a worker."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

import redis
from redis import asyncio as aioredis

from services.kernel import keys
from services.kernel.contracts import Hold, Manifest, Recording, Status, utcnow
from services.stores.scripts import (
    CREATE,
    CREATE_EVENT,
    REQUEUED,
    SETTLE,
    START,
    UPDATE,
    ScriptArg,
)
from services.stores.storage import folder_size

log = logging.getLogger(__name__)

# Finds a recording's written folder: its manifest and path, or None if none was written.
WrittenLookup = Callable[[Recording], "tuple[Manifest, Path] | None"]


class QueueFullError(Exception):
    """The job queue is at its limit; the event was not stored."""


@dataclass(frozen=True)
class LaneEventRecord:
    """A lane event's hash: which lane, which transaction, when, and its recordings by
    camera; `live` counts those retention has not deleted yet."""

    event_id: str
    lane_id: str
    transaction_id: str | None
    received_at: datetime
    recordings: dict[str, str]  # camera -> recording ID, in the lane's order

    def fields(self) -> dict[str, str]:
        """The hash's fields."""
        fields = {
            "event_id": self.event_id, "lane_id": self.lane_id,
            "received_at": self.received_at.isoformat(),
            "recordings": json.dumps(self.recordings), "live": str(len(self.recordings)),
        }  # fmt: skip
        if self.transaction_id:
            fields["transaction_id"] = self.transaction_id
        return fields

    @classmethod
    def parse(cls, fields: dict[bytes, bytes]) -> LaneEventRecord:
        """From HGETALL's reply."""
        data = {key.decode(): value.decode() for key, value in fields.items()}
        return cls(
            event_id=data["event_id"], lane_id=data["lane_id"],
            transaction_id=data.get("transaction_id"),
            received_at=datetime.fromisoformat(data["received_at"]),
            recordings=json.loads(data["recordings"]),
        )  # fmt: skip


class RecordingKeys:
    """The pure half of recording state: key names, script calls and parsing, shared by the
    asyncio shell (`AsyncRecordingStore`, the API's) and the blocking one (`RecordingStore`),
    as httpx shares its BaseClient between Client and AsyncClient."""

    @staticmethod
    def _create_call(
        recording: Recording,
        idempotency_key: str | None,
        ttl: int,
        job_message: str,
        max_queued: int,
    ) -> tuple[list[str], list[ScriptArg]]:
        idem = keys.idempotency(recording.camera_id, idempotency_key) if idempotency_key else ""
        score = score_of(recording.received_at)
        transaction = recording.transaction_id
        # received_ms: the score under which retention lists the recording once final.
        fields = {**_to_fields(recording), "received_ms": str(score)}
        return CREATE.bind(
            idempotency=idem or keys.recording(recording.recording_id),
            recording=keys.recording(recording.recording_id), all=keys.RECORDINGS_ALL,
            of_camera=keys.recordings_of(recording.camera_id), queue=keys.RECORD_QUEUE,
            open=keys.RECORDINGS_OPEN, held=keys.held_of(recording.camera_id),
            transaction=keys.transaction(transaction) if transaction else "",
            jobs=keys.JOB_MESSAGES, claim="1" if idem else "0",
            recording_id=recording.recording_id, ttl=ttl,
            score=score, max_queued=max_queued, job_message=job_message,
            deadline_ms=_ms(recording.deadline or recording.received_at),
            on_hold="1" if recording.hold else "0",
            fields=[item for pair in fields.items() for item in pair],
        )  # fmt: skip

    @staticmethod
    def _create_event_call(
        event: LaneEventRecord,
        recordings: list[tuple[Recording, str]],
        idempotency_key: str | None,
        ttl: int,
        max_queued: int,
    ) -> tuple[list[str], list[ScriptArg]]:
        idem = keys.lane_idempotency(event.lane_id, idempotency_key) if idempotency_key else ""
        first = recordings[0][0]
        per_recording: list[str] = []
        event_fields = event.fields()
        tail: list[ScriptArg] = [item for pair in event_fields.items() for item in pair]
        for recording, job_message in recordings:
            transaction = recording.transaction_id
            per_recording += [
                keys.recording(recording.recording_id), keys.recordings_of(recording.camera_id),
                keys.held_of(recording.camera_id),
                keys.transaction(transaction) if transaction else "",
            ]  # fmt: skip
            fields = {**_to_fields(recording), "received_ms": str(score_of(recording.received_at))}
            tail += [recording.recording_id, job_message, 2 * len(fields)]
            tail += [item for pair in fields.items() for item in pair]
        return CREATE_EVENT.bind(
            idempotency=idem or keys.event(event.event_id), event=keys.event(event.event_id),
            queue=keys.RECORD_QUEUE, open=keys.RECORDINGS_OPEN, all=keys.RECORDINGS_ALL,
            jobs=keys.JOB_MESSAGES, per_recording=per_recording, claim="1" if idem else "0",
            event_id=event.event_id, ttl=ttl, score=score_of(first.received_at),
            max_queued=max_queued, deadline_ms=_ms(first.deadline or first.received_at),
            on_hold="1" if first.hold else "0", count=len(recordings),
            event_field_count=2 * len(event_fields), event_fields_then_recordings=tail,
        )  # fmt: skip

    @staticmethod
    def _owner_of(reply: bytes | str | None, max_queued: int) -> str:
        if reply is None:
            raise QueueFullError(f"{max_queued} recordings are already queued")
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    @staticmethod
    def _final_keys(camera_id: str) -> dict[str, str]:
        """The keys a script that may make a recording final writes for retention."""
        return {
            "retention": keys.RETENTION,
            "camera_retention": keys.retention_of(camera_id),
            "usage": keys.USAGE_BYTES,
            "outbox": keys.WEBHOOK_OUTBOX,
            "jobs": keys.JOB_MESSAGES,
        }

    @staticmethod
    def _parsed(fields: object) -> Recording | None:
        return parse_recording(fields)

    @staticmethod
    def _newest_range(camera_id: str | None, before: datetime | None) -> tuple[str, str]:
        """The index to read and its upper bound, for recordings received before a time."""
        index = keys.recordings_of(camera_id) if camera_id else keys.RECORDINGS_ALL
        return index, f"({score_of(before)}" if before else "+inf"

    @staticmethod
    def _listed(replies: list[object]) -> list[Recording]:
        return [_from_fields(cast("dict[bytes, bytes]", fields)) for fields in replies if fields]


class AsyncRecordingStore(RecordingKeys):
    """Where the API creates recordings and queues their jobs, on an asyncio client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._create = client.register_script(CREATE.source)
        self._create_event = client.register_script(CREATE_EVENT.source)

    async def create(
        self,
        recording: Recording,
        idempotency_key: str | None,
        ttl: int,
        *,
        job_message: str = "",
        max_queued: int = 0,
    ) -> str:
        """Store a new queued recording and push its job message; or return the ID already
        given to this key. Raises QueueFullError, writing nothing, when `max_queued` jobs wait.
        """
        script_keys, args = self._create_call(
            recording, idempotency_key, ttl, job_message, max_queued
        )
        return self._owner_of(await self._create(keys=script_keys, args=args), max_queued)

    async def get(self, recording_id: str) -> Recording | None:
        """One recording's status, or None if unknown."""
        return self._parsed(await self._redis.hgetall(keys.recording(recording_id)))

    async def create_event(
        self,
        event: LaneEventRecord,
        recordings: list[tuple[Recording, str]],
        idempotency_key: str | None,
        ttl: int,
        *,
        max_queued: int = 0,
    ) -> str:
        """Store a lane event and one queued recording (with its job message) per camera, or
        return the event ID already given to this key. Raises QueueFullError, writing
        nothing, unless the queue takes every job."""
        script_keys, args = self._create_event_call(
            event, recordings, idempotency_key, ttl, max_queued
        )
        reply = await self._create_event(keys=script_keys, args=args)
        return self._owner_of(reply, max_queued)

    async def get_event(self, event_id: str) -> LaneEventRecord | None:
        """A lane event as stored, or None if unknown (or expired after its recordings)."""
        fields = await self._redis.hgetall(keys.event(event_id))
        return LaneEventRecord.parse(cast("dict[bytes, bytes]", fields)) if fields else None


@dataclass(frozen=True)
class Start:
    """What a worker learnt when it started a job: the recording's status now, and how many
    times its job has been started."""

    status: Status | None
    deliveries: int


class RecordingStore(RecordingKeys):
    """Reads and writes recording state in the state store, on a blocking client."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._create = client.register_script(CREATE.source)
        self._update = client.register_script(UPDATE.source)
        self._start = client.register_script(START.source)
        self._requeued = client.register_script(REQUEUED.source)
        self._settle = client.register_script(SETTLE.source)

    def create(self, recording: Recording, idempotency_key: str | None, ttl: int) -> str:
        """Store a new queued recording without a job (for tests and tools)."""
        script_keys, args = self._create_call(recording, idempotency_key, ttl, "", 0)
        return self._owner_of(self._create(keys=script_keys, args=args), 0)

    def get(self, recording_id: str) -> Recording | None:
        """One recording's status, or None if unknown."""
        return self._parsed(self._redis.hgetall(keys.recording(recording_id)))

    def update(
        self,
        recording_id: str,
        status: Status,
        *,
        reason: str | None = None,
        frames_saved: int | None = None,
        path: str | None = None,
        size: int | None = None,
        camera_id: str | None = None,
    ) -> bool:
        """Move a recording to a status; False if it was already final (or unknown).

        `size`: the bytes of the folder written, which count towards its camera's usage.
        `camera_id`, when the caller knows it, saves reading it for retention's keys.
        """
        fields: dict[str, str] = {"status": status.value, "updated_at": utcnow().isoformat()}
        if reason is not None:
            fields["reason"] = reason
        if frames_saved is not None:
            fields["frames_saved"] = str(frames_saved)
        if path is not None:
            fields["path"] = path
        if size is not None:
            fields["bytes"] = str(size)
        camera = (camera_id or self._camera_of(recording_id)) if status.is_final else ""
        script_keys, args = UPDATE.bind(
            recording=keys.recording(recording_id), open=keys.RECORDINGS_OPEN,
            **self._final_keys(camera), recording_id=recording_id,
            final="1" if status.is_final else "0", camera_id=camera,
            fields=[item for pair in fields.items() for item in pair],
        )  # fmt: skip
        return bool(self._update(keys=script_keys, args=args))

    def _camera_of(self, recording_id: str) -> str:
        """A recording's camera ('' if unknown): the keys of its retention bookkeeping."""
        camera = cast("bytes | None", self._redis.hget(keys.recording(recording_id), "camera_id"))
        return camera.decode() if camera else ""

    def start(
        self,
        recording_id: str,
        *,
        retries: int,
        max_deliveries: int,
        deadline: datetime,
        camera_id: str | None = None,
    ) -> Start:
        """Count a delivery and mark the recording running, or failed once its job has been
        lost `max_deliveries` times (retries are not losses). None status: unknown recording.
        """
        reason = (
            f"its worker process died on each of its {max_deliveries} runs "
            "(SCO_MAX_DELIVERIES); the job is not tried again"
        )
        camera_id = camera_id or self._camera_of(recording_id)
        script_keys, args = START.bind(
            recording=keys.recording(recording_id), open=keys.RECORDINGS_OPEN,
            **self._final_keys(camera_id), recording_id=recording_id,
            max_deliveries=max_deliveries, retries=retries, deadline_ms=_ms(deadline),
            deadline_iso=deadline.isoformat(), now_iso=_now(), failed_reason=reason,
            camera_id=camera_id,
        )  # fmt: skip
        status, deliveries = self._start(keys=script_keys, args=args)
        text = status.decode()
        return Start(None if text == "unknown" else Status(text), int(deliveries))

    def requeued(self, recording_id: str, reason: str, deadline: datetime) -> bool:
        """Show a job taken back from a dead worker as queued again; False if already final."""
        script_keys, args = REQUEUED.bind(
            recording=keys.recording(recording_id), open=keys.RECORDINGS_OPEN,
            recording_id=recording_id, reason=reason, deadline_ms=_ms(deadline),
            deadline_iso=deadline.isoformat(), now_iso=_now(),
        )  # fmt: skip
        return bool(self._requeued(keys=script_keys, args=args))

    def settle_overdue(
        self, now: datetime, written: WrittenLookup | None = None, limit: int = 100
    ) -> list[str]:
        """Settle the recordings still queued or running past their deadline.

        Nothing can still be working on such a recording: its job was lost with a worker that
        no takeover reached, or its outcome could not be stored when it happened. One whose
        folder was written takes the status its metadata.json gives; the others fail, why.
        """
        now_ms = _ms(now)
        due = cast(
            "list[bytes]",
            self._redis.zrangebyscore(keys.RECORDINGS_OPEN, "-inf", now_ms, start=0, num=limit),
        )
        running, queued = _overdue_reasons(now)
        settled = []
        for raw in due:
            recording_id = raw.decode()
            if written is not None and self._settle_from_folder(recording_id, written):
                settled.append(recording_id)
                continue
            camera_id = self._camera_of(recording_id)
            script_keys, args = SETTLE.bind(
                recording=keys.recording(recording_id), open=keys.RECORDINGS_OPEN,
                **self._final_keys(camera_id), recording_id=recording_id, now_ms=now_ms,
                now_iso=now.isoformat(), running_reason=running, queued_reason=queued,
                camera_id=camera_id,
            )  # fmt: skip
            was = self._settle(keys=script_keys, args=args)
            if was:
                log.warning("recording %s was %s past its deadline: failed", recording_id,
                            was.decode())  # fmt: skip
                settled.append(recording_id)
        return settled

    def _settle_from_folder(self, recording_id: str, written: WrittenLookup) -> bool:
        """Take the outcome from the recording's folder, if a worker wrote one."""
        recording = self.get(recording_id)
        found = written(recording) if recording is not None else None
        if found is None:
            return False
        manifest, path = found
        log.warning("recording %s was written but its status was not stored; now %s",
                    recording_id, manifest.status.value)  # fmt: skip
        self.update(
            recording_id,
            manifest.status,
            reason=manifest.reason,
            frames_saved=manifest.frames_saved,
            path=str(path),
            size=folder_size(path),
        )
        return True

    def newest(
        self, camera_id: str | None, limit: int, before: datetime | None = None
    ) -> list[Recording]:
        """Recordings newest first, optionally of one camera and received before a time."""
        index, upper = self._newest_range(camera_id, before)
        ids = cast(
            "list[bytes]", self._redis.zrevrangebyscore(index, upper, "-inf", start=0, num=limit)
        )
        pipe = self._redis.pipeline(transaction=False)
        for recording_id in ids:
            pipe.hgetall(keys.recording(recording_id.decode()))
        return self._listed(pipe.execute())


def parse_recording(fields: object) -> Recording | None:
    """A recording from its hash as HGETALL returns it (None for an empty one)."""
    return _from_fields(cast("dict[bytes, bytes]", fields)) if fields else None


def score_of(moment: datetime) -> int:
    """A moment as the recordings indexes score it: ms since the epoch."""
    return int(moment.timestamp() * 1000)


def _now() -> str:
    return utcnow().isoformat()


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _overdue_reasons(now: datetime) -> tuple[str, str]:
    """Why a running, and why a queued, recording was settled at its deadline."""
    when = now.isoformat(timespec="seconds")
    return (
        f"its job did not finish by its deadline ({when}): the worker died or hung where "
        "no takeover could reach it, or its failure could not be recorded",
        f"no worker started its job by its deadline ({when}): no worker was running, or "
        "the queue was too long",
    )


_HOLDS = ("hold", "released")  # the hash fields that hold a Hold as JSON


def hold_field(hold: Hold | None) -> str:
    """A hold as the recording hash holds it: JSON, or '' for none."""
    return hold.model_dump_json() if hold else ""


def _to_fields(recording: Recording) -> dict[str, str]:
    data = recording.model_dump(mode="json", exclude_none=True, exclude={*_HOLDS, "metadata"})
    fields = {key: str(value) for key, value in data.items()}
    for name in _HOLDS:
        if (hold := getattr(recording, name)) is not None:
            fields[name] = hold_field(hold)
    if recording.metadata is not None:
        fields["metadata"] = json.dumps(recording.metadata)
    return fields


def _from_fields(fields: dict[bytes, bytes]) -> Recording:
    data: dict[str, object] = {key.decode(): value.decode() for key, value in fields.items()}
    for name in _HOLDS:
        if name in data:
            data[name] = Hold.model_validate_json(cast("str", data[name]))
    if "metadata" in data:
        data["metadata"] = json.loads(cast("str", data["metadata"]))
    return Recording.model_validate(data)
