"""Recording state in the durable store: created at receipt, moved to a final status by a worker."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import redis
from redis import asyncio as aioredis

from services.common import keys
from services.common.contracts import Recording, Status, utcnow

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
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
if ARGV[6] ~= '' then redis.call('LPUSH', KEYS[5], ARGV[6]) end
return ARGV[2]
"""

# Moves a recording to a new status unless it is already final: a redelivered job must not
# turn a complete recording back into a running one.
UPDATE_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'complete' or status == 'partial' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
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
            ],
            args=[
                "1" if idem else "0",
                recording.recording_id,
                ttl,
                _score(recording.received_at),
                max_queued,
                job_message,
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


class RecordingStore:
    """Reads and writes recording status in the broker's Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._update = client.register_script(UPDATE_SCRIPT)

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
        return bool(self._update(keys=[keys.recording(recording_id)], args=flat))

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


def _to_fields(recording: Recording) -> dict[str, str]:
    data = recording.model_dump(mode="json", exclude_none=True)
    return {key: str(value) for key, value in data.items()}


def _from_fields(fields: dict[bytes, bytes]) -> Recording:
    return Recording.model_validate({key.decode(): value.decode() for key, value in fields.items()})
