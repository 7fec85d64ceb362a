"""Recording state in the durable store: created at receipt, moved to a final status by a worker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

import redis
from redis import asyncio as aioredis

from services.kernel import keys
from services.kernel.contracts import Manifest, Recording, Status, utcnow

log = logging.getLogger(__name__)

# Finds a recording's written folder: its manifest and path, or None if none was written.
WrittenLookup = Callable[[Recording], "tuple[Manifest, Path] | None"]

# Claims the idempotency key (if any), creates the recording and queues its job in one step:
# two copies of one event racing each other still make one recording, and a job is never
# queued without its recording (nor the reverse). Returns the recording ID that owns the
# event, or false when the queue is full (then nothing is written).
CREATE_SCRIPT = """
if ARGV[1] == '1' then
  local existing = redis.call('GET', KEYS[1])
  if existing then return existing end
end
local limit = tonumber(ARGV[5])
if limit > 0 and redis.call('LLEN', KEYS[5]) >= limit then return false end
if ARGV[1] == '1' then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
redis.call('HSET', KEYS[2], unpack(ARGV, 8))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[6], ARGV[7], ARGV[2])
if ARGV[6] ~= '' then redis.call('LPUSH', KEYS[5], ARGV[6]) end
return ARGV[2]
"""

# Moves a recording to a new status unless it is already final: a redelivered job must not
# turn a complete recording back into a running one. A final status leaves the open set.
UPDATE_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'complete' or status == 'partial' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] == '1' then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
"""

# A worker starts a job: counts the delivery, and either marks the recording running (its
# deadline pushed out to cover this run) or, when its worker died on it too many times,
# failed. A final recording is left alone: the job has nothing left to do.
START_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'unknown', 0} end
if status == 'complete' or status == 'partial' or status == 'failed' then
  return {status, 0}
end
local deliveries = redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
if deliveries - tonumber(ARGV[3]) > tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'reason', ARGV[7], 'updated_at', ARGV[6])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'failed', deliveries}
end
redis.call('HSET', KEYS[1], 'status', 'running', 'updated_at', ARGV[6])
local current = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not current or tonumber(current) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  redis.call('HSET', KEYS[1], 'deadline', ARGV[5])
end
return {'running', deliveries}
"""

# A job taken back from a dead worker is queued again, first in line: its recording says so
# and its deadline covers one more run.
REQUEUED_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'reason', ARGV[2], 'updated_at', ARGV[5])
local current = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not current or tonumber(current) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  redis.call('HSET', KEYS[1], 'deadline', ARGV[4])
end
return 1
"""

# Settles one overdue recording as failed, unless it became final or its deadline moved.
SETTLE_SCRIPT = """
local deadline = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not deadline then return false end
if tonumber(deadline) > tonumber(ARGV[2]) then return false end
redis.call('ZREM', KEYS[2], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' and status ~= 'running' then return false end
local reason = ARGV[4]
if status == 'queued' then reason = ARGV[5] end
redis.call('HSET', KEYS[1], 'status', 'failed', 'reason', reason, 'updated_at', ARGV[3])
return status
"""

FINAL = {status.value for status in Status if status.is_final}


class QueueFullError(Exception):
    """The job queue is at its limit; the event was not stored."""


class RecordingIntake:
    """Where the API creates recordings and queues their jobs, on an asyncio client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._create = client.register_script(CREATE_SCRIPT)

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
        idem = keys.idempotency(recording.camera_id, idempotency_key) if idempotency_key else ""
        fields = _to_fields(recording)
        flat = [item for pair in fields.items() for item in pair]
        owner = await self._create(
            keys=[
                idem or keys.recording(recording.recording_id),
                keys.recording(recording.recording_id),
                keys.RECORDINGS_ALL,
                keys.recordings_of(recording.camera_id),
                keys.RECORD_QUEUE,
                keys.RECORDINGS_OPEN,
            ],
            args=[
                "1" if idem else "0",
                recording.recording_id,
                ttl,
                _score(recording.received_at),
                max_queued,
                job_message,
                _ms(recording.deadline or recording.received_at),
                *flat,
            ],
        )
        if owner is None:
            raise QueueFullError(f"{max_queued} recordings are already queued")
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    async def get(self, recording_id: str) -> Recording | None:
        """One recording's status, or None if unknown."""
        fields = await self._redis.hgetall(keys.recording(recording_id))
        return _from_fields(cast("dict[bytes, bytes]", fields)) if fields else None


@dataclass(frozen=True)
class Start:
    """What a worker learnt when it started a job: the recording's status now, and how many
    times its job has been started."""

    status: Status | None
    deliveries: int


class RecordingStore:
    """Reads and writes recording status in the broker's Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._update = client.register_script(UPDATE_SCRIPT)
        self._start = client.register_script(START_SCRIPT)
        self._requeued = client.register_script(REQUEUED_SCRIPT)
        self._settle = client.register_script(SETTLE_SCRIPT)

    def get(self, recording_id: str) -> Recording | None:
        """One recording's status, or None if unknown."""
        fields = cast("dict[bytes, bytes]", self._redis.hgetall(keys.recording(recording_id)))
        return _from_fields(fields) if fields else None

    def update(
        self,
        recording_id: str,
        status: Status,
        *,
        reason: str | None = None,
        frames_saved: int | None = None,
        path: str | None = None,
    ) -> bool:
        """Move a recording to a status; False if it was already final (or unknown)."""
        fields: dict[str, str] = {"status": status.value, "updated_at": utcnow().isoformat()}
        if reason is not None:
            fields["reason"] = reason
        if frames_saved is not None:
            fields["frames_saved"] = str(frames_saved)
        if path is not None:
            fields["path"] = path
        flat = [item for pair in fields.items() for item in pair]
        final = "1" if status.is_final else "0"
        return bool(
            self._update(
                keys=[keys.recording(recording_id), keys.RECORDINGS_OPEN],
                args=[recording_id, final, *flat],
            )
        )

    def start(
        self, recording_id: str, *, retries: int, max_deliveries: int, deadline: datetime
    ) -> Start:
        """Count a delivery and mark the recording running, or failed once its job has been
        lost `max_deliveries` times (retries are not losses). None status: unknown recording.
        """
        reason = (
            f"its worker process died on each of its {max_deliveries} runs "
            "(SCO_MAX_DELIVERIES); the job is not tried again"
        )
        status, deliveries = self._start(
            keys=[keys.recording(recording_id), keys.RECORDINGS_OPEN],
            args=[
                recording_id, max_deliveries, retries, _ms(deadline), deadline.isoformat(),
                _now(), reason,
            ],
        )  # fmt: skip
        text = status.decode()
        return Start(None if text == "unknown" else Status(text), int(deliveries))

    def requeued(self, recording_id: str, reason: str, deadline: datetime) -> bool:
        """Show a job taken back from a dead worker as queued again; False if already final."""
        return bool(
            self._requeued(
                keys=[keys.recording(recording_id), keys.RECORDINGS_OPEN],
                args=[recording_id, reason, _ms(deadline), deadline.isoformat(), _now()],
            )
        )

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
        settled = []
        for raw in due:
            recording_id = raw.decode()
            if written is not None and self._settle_from_folder(recording_id, written):
                settled.append(recording_id)
                continue
            running, queued = _overdue_reasons(now)
            was = self._settle(
                keys=[keys.recording(recording_id), keys.RECORDINGS_OPEN],
                args=[recording_id, now_ms, now.isoformat(), running, queued],
            )
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
        )
        return True

    def newest(
        self, camera_id: str | None, limit: int, before: datetime | None = None
    ) -> list[Recording]:
        """Recordings newest first, optionally of one camera and received before a time."""
        index = keys.recordings_of(camera_id) if camera_id else keys.RECORDINGS_ALL
        upper = f"({_score(before)}" if before else "+inf"
        ids = cast(
            "list[bytes]", self._redis.zrevrangebyscore(index, upper, "-inf", start=0, num=limit)
        )
        pipe = self._redis.pipeline(transaction=False)
        for recording_id in ids:
            pipe.hgetall(keys.recording(recording_id.decode()))
        return [_from_fields(fields) for fields in pipe.execute() if fields]


def _score(moment: datetime) -> int:
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


def _to_fields(recording: Recording) -> dict[str, str]:
    data = recording.model_dump(mode="json", exclude_none=True)
    return {key: str(value) for key, value in data.items()}


def _from_fields(fields: dict[bytes, bytes]) -> Recording:
    return Recording.model_validate({key.decode(): value.decode() for key, value in fields.items()})
