"""A lane event's state: one step creates every camera's recording and job or nothing, its key
covers the whole event, and its hash goes once retention has deleted its last recording
(fakeredis; the Lua is the stores' own)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.kernel import keys
from services.kernel.contracts import Recording, Status, utcnow
from services.stores.recordings import (
    AsyncRecordingStore,
    LaneEventRecord,
    QueueFullError,
    RecordingStore,
)
from services.stores.retention import RetentionStore
from tests.support.storeredis import StoreRedis

CAMERAS = ("lane-1-top", "lane-1-bag")


def lane_event(transaction_id: str = "T-1") -> tuple[LaneEventRecord, list[tuple[Recording, str]]]:
    now = utcnow()
    event_id = uuid.uuid4().hex
    recordings = [
        (
            Recording(
                recording_id=uuid.uuid4().hex,
                camera_id=camera,
                event_id=event_id,
                lane_id="lane-1",
                transaction_id=transaction_id,
                status=Status.QUEUED,
                frames_requested=30,
                event_time=now,
                received_at=now,
                updated_at=now,
                deadline=now,
            ),
            f"job of {camera}",
        )
        for camera in CAMERAS
    ]
    record = LaneEventRecord(
        event_id=event_id, lane_id="lane-1", transaction_id=transaction_id, received_at=now,
        recordings={recording.camera_id: recording.recording_id for recording, _ in recordings},
    )  # fmt: skip
    return record, recordings


def test_one_step_makes_every_recording_and_job_and_a_repeat_gets_the_same_event(
    store_redis: StoreRedis,
) -> None:
    async def scenario() -> None:
        store = AsyncRecordingStore(store_redis.new_async())
        record, recordings = lane_event()
        assert await store.create_event(record, recordings, "T-1", 60) == record.event_id
        repeat, repeated = lane_event()
        assert await store.create_event(repeat, repeated, "T-1", 60) == record.event_id
        stored = await store.get_event(record.event_id)
        assert stored == record
        for recording, _ in recordings:
            got = await store.get(recording.recording_id)
            assert got is not None
            assert (got.event_id, got.lane_id) == (record.event_id, "lane-1")
        for recording, _ in repeated:
            assert await store.get(recording.recording_id) is None
        assert await store.get_event(repeat.event_id) is None

    asyncio.run(scenario())
    client = store_redis.client
    assert client.lrange(keys.RECORD_QUEUE, 0, -1) == [b"job of lane-1-bag", b"job of lane-1-top"]
    assert client.zcard(keys.transaction("T-1")) == len(CAMERAS)


def test_a_queue_that_cannot_take_every_job_takes_none(store_redis: StoreRedis) -> None:
    async def scenario() -> None:
        store = AsyncRecordingStore(store_redis.new_async())
        store_redis.client.lpush(keys.RECORD_QUEUE, "an earlier job")
        record, recordings = lane_event()
        with pytest.raises(QueueFullError):
            await store.create_event(record, recordings, "T-1", 60, max_queued=2)
        assert await store.get_event(record.event_id) is None
        assert await store.create_event(record, recordings, "T-1", 60, max_queued=3)

    asyncio.run(scenario())


def test_the_event_goes_with_its_last_recording(store_redis: StoreRedis) -> None:
    record, recordings = lane_event()
    asyncio.run(AsyncRecordingStore(store_redis.new_async()).create_event(record, recordings,
                                                                          None, 60))  # fmt: skip
    store, retention = RecordingStore(store_redis.client), RetentionStore(store_redis.client)
    event_key = keys.event(record.event_id)
    for number, (recording, _) in enumerate(recordings):
        store.update(recording.recording_id, Status.COMPLETE, frames_saved=30, size=100)
        candidate = retention.candidate(recording.recording_id)
        assert candidate is not None
        assert retention.retire([(candidate, "age", "older than 30 days")], utcnow(), 3600) == [100]
        if number == 0:
            assert store_redis.client.ttl(event_key) == -1  # one recording still there
    assert 0 < store_redis.client.ttl(event_key) <= 3600
