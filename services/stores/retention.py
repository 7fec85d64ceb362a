"""Retention state in the state store: holds, the candidates a rule may delete, deleting a
recording's state (a tombstone stays), the bytes each camera's recordings weigh, and the
disk status the API admits events by."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

import redis
from redis import asyncio as aioredis

from services.kernel import keys
from services.kernel.contracts import DiskStatus, Gone, Hold, Status
from services.stores.recordings import hold_field
from services.stores.scripts import HOLD, RETIRE, ScriptArg

HoldResult = Literal["held", "released", "gone", "unknown"]
_CANDIDATE_FIELDS = (
    "camera_id",
    "status",
    "event_time",
    "deadline",
    "bytes",
    "hold",
    "transaction_id",
)


@dataclass(frozen=True)
class Candidate:
    """A recording a retention rule may delete, as its state shows it."""

    recording_id: str
    camera_id: str
    status: Status
    event_time: datetime
    deadline: datetime | None
    size: int
    held: bool
    transaction_id: str | None = None


@dataclass(frozen=True)
class CameraUsage:
    """What one camera's recordings weigh, for the metrics."""

    size: int
    count: int
    oldest_ms: int | None
    held: int


class RetentionKeys:
    """The pure half: script calls and parsing, shared by the asyncio and blocking shells."""

    @staticmethod
    def _hold_call(
        recording_id: str, camera_id: str, hold: Hold | None, released: Hold | None
    ) -> tuple[list[str], list[ScriptArg]]:
        return HOLD.bind(
            recording=keys.recording(recording_id), gone=keys.gone(recording_id),
            held=keys.held_of(camera_id), retention=keys.RETENTION,
            camera_retention=keys.retention_of(camera_id), recording_id=recording_id,
            camera_id=camera_id, hold=hold_field(hold), released=hold_field(released),
        )  # fmt: skip

    @staticmethod
    def _gone_of(fields: object) -> Gone | None:
        raw = cast("dict[bytes, bytes]", fields)
        if not raw:
            return None
        return Gone.model_validate({key.decode(): value.decode() for key, value in raw.items()})

    @staticmethod
    def _disk_of(raw: object) -> DiskStatus | None:
        return DiskStatus.model_validate_json(cast("bytes", raw)) if raw else None


class AsyncRetentionStore(RetentionKeys):
    """The API's side: holds, tombstones, the disk status and the usage gauges."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._hold = client.register_script(HOLD.source)

    async def hold(
        self, recording_id: str, camera_id: str, hold: Hold | None, released: Hold | None = None
    ) -> HoldResult:
        """Put a recording on hold, or release it (hold None; `released`: who and why)."""
        script_keys, args = self._hold_call(recording_id, camera_id, hold, released)
        reply = await self._hold(keys=script_keys, args=args)
        return cast("HoldResult", reply.decode())

    async def gone(self, recording_id: str) -> Gone | None:
        """The tombstone of a recording retention deleted, while it lasts."""
        return self._gone_of(await self._redis.hgetall(keys.gone(recording_id)))

    async def disk(self) -> DiskStatus | None:
        """The recordings filesystem as the last prune pass saw it; None if none ran lately."""
        return self._disk_of(await self._redis.get(keys.DISK))

    async def usage(self) -> dict[str, CameraUsage]:
        """Bytes, count, oldest and holds of each camera's recordings."""
        sizes = cast("dict[bytes, bytes]", await self._redis.hgetall(keys.USAGE_BYTES))
        cameras = sorted(camera.decode() for camera in sizes)
        async with self._redis.pipeline(transaction=False) as pipe:
            for camera in cameras:
                pipe.zcard(keys.recordings_of(camera))
                pipe.zrange(keys.recordings_of(camera), 0, 0, withscores=True)
                pipe.scard(keys.held_of(camera))
            replies = await pipe.execute()
        usage = {}
        for number, camera in enumerate(cameras):
            count, oldest, held = replies[3 * number : 3 * number + 3]
            usage[camera] = CameraUsage(
                size=int(sizes[camera.encode()]),
                count=int(count),
                oldest_ms=int(oldest[0][1]) if oldest else None,
                held=int(held),
            )
        return usage

    async def deletions(self) -> dict[tuple[str, str], int]:
        """Recordings deleted so far, by (camera, rule)."""
        counts = cast("dict[bytes, bytes]", await self._redis.hgetall(keys.DELETIONS))
        result = {}
        for label, count in counts.items():
            camera, _, rule = label.decode().partition("|")
            result[camera, rule] = int(count)
        return result


class RetentionStore(RetentionKeys):
    """The prune's side, on a blocking client."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._retire = client.register_script(RETIRE.source)
        self._hold = client.register_script(HOLD.source)

    def hold(
        self, recording_id: str, camera_id: str, hold: Hold | None, released: Hold | None = None
    ) -> HoldResult:
        """Put a recording on hold, or release it (hold None; `released`: who and why)."""
        script_keys, args = self._hold_call(recording_id, camera_id, hold, released)
        return cast("HoldResult", self._hold(keys=script_keys, args=args).decode())

    def oldest(
        self, index: str, start: int, count: int, max_ms: int | None = None
    ) -> tuple[int, list[Candidate]]:
        """Up to `count` entries of a retention index from `start`, oldest first, received at
        or before `max_ms`: how many entries were read, and those still recorded."""
        upper: float | str = "+inf" if max_ms is None else max_ms
        ids = cast(
            "list[bytes]", self._redis.zrangebyscore(index, "-inf", upper, start=start, num=count)
        )
        pipe = self._redis.pipeline(transaction=False)
        for recording_id in ids:
            pipe.hmget(keys.recording(recording_id.decode()), _CANDIDATE_FIELDS)
        candidates = [
            _candidate(recording_id.decode(), fields)
            for recording_id, fields in zip(ids, pipe.execute(), strict=True)
            if fields[1] is not None
        ]
        return len(ids), candidates

    def retire(
        self, doomed: list[tuple[Candidate, str, str]], now: datetime, tombstone_ttl: int
    ) -> list[int | None]:
        """Delete the state of (candidate, rule, reason)s in one pipeline, each only if it may
        still go (final, not held): the bytes each weighed, or None where it was kept."""
        pipe = self._redis.pipeline(transaction=False)
        for candidate, rule, reason in doomed:
            script_keys, args = RETIRE.bind(
                recording=keys.recording(candidate.recording_id),
                gone=keys.gone(candidate.recording_id), all=keys.RECORDINGS_ALL,
                of_camera=keys.recordings_of(candidate.camera_id), retention=keys.RETENTION,
                camera_retention=keys.retention_of(candidate.camera_id),
                usage=keys.USAGE_BYTES, deletions=keys.DELETIONS, open=keys.RECORDINGS_OPEN,
                transaction=(
                    keys.transaction(candidate.transaction_id) if candidate.transaction_id else ""
                ),
                recording_id=candidate.recording_id, camera_id=candidate.camera_id, rule=rule,
                reason=reason, now_iso=now.isoformat(), tombstone_ttl=tombstone_ttl,
                event_prefix=keys.EVENT_PREFIX,
            )  # fmt: skip
            self._retire(keys=script_keys, args=args, client=pipe)
        return [None if reply is None else int(reply) for reply in pipe.execute()]

    def candidate(self, recording_id: str) -> Candidate | None:
        """One recording's retention fields, or None if its state is gone."""
        fields = cast(
            "list[bytes | None]", self._redis.hmget(keys.recording(recording_id), _CANDIDATE_FIELDS)
        )
        return None if fields[1] is None else _candidate(recording_id, fields)

    def exists(self, recording_id: str) -> bool:
        """True while the recording's state is kept (not deleted by retention)."""
        return bool(self._redis.exists(keys.recording(recording_id)))

    def usage(self) -> dict[str, int]:
        """Bytes of each camera's recordings."""
        sizes = cast("dict[bytes, bytes]", self._redis.hgetall(keys.USAGE_BYTES))
        return {camera.decode(): int(size) for camera, size in sizes.items()}

    def write_disk(self, status: DiskStatus, ttl: int) -> None:
        """Publish the disk status for the API; it lapses if no pass renews it."""
        self._redis.set(keys.DISK, status.model_dump_json(), ex=ttl)

    def disk(self) -> DiskStatus | None:
        """The disk status the last pass published."""
        return self._disk_of(self._redis.get(keys.DISK))

    @contextmanager
    def exclusive(self, seconds: int) -> Iterator[bool]:
        """Hold the prune lock for a pass (True), or learn another pass holds it (False)."""
        lock = self._redis.lock(keys.PRUNE_LOCK, timeout=seconds, blocking=False)
        acquired = lock.acquire()
        try:
            yield bool(acquired)
        finally:
            if acquired:
                with suppress(redis.exceptions.LockError):  # expired during a very long pass
                    lock.release()


def _candidate(recording_id: str, fields: list[bytes | None]) -> Candidate:
    camera, status, event_time, deadline, size, hold, transaction = (
        value.decode() if value is not None else None for value in fields
    )
    return Candidate(
        recording_id=recording_id,
        camera_id=camera or "",
        status=Status(status),
        event_time=datetime.fromisoformat(cast("str", event_time)),
        deadline=datetime.fromisoformat(deadline) if deadline else None,
        size=int(size or 0),
        held=hold is not None and bool(json.loads(hold)),
        transaction_id=transaction,
    )
