"""Takeover: which deliveries are orphaned, and how one is put back (fakeredis; real:
tests/stores/test_real_redis.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import timedelta
from typing import Any, cast

import pytest
import redis
from celery import Celery
from kombu.utils import json as kombu_json

from services.kernel import keys
from services.kernel.contracts import Recording, Status, utcnow
from services.stores.recordings import AsyncRecordingStore, RecordingStore
from services.stores.taskqueue import record_message
from services.worker.liveness import LOST_REASON, Takeover
from tests.support.storeredis import StoreRedis

NOW = 1_800_000_000.0


@pytest.fixture
def client(store_redis: StoreRedis) -> redis.Redis:
    """The state store of the test."""
    return store_redis.client


def takeover(client: redis.Redis, clock: list[float] | None = None) -> Takeover:
    """A takeover whose clock stands still at NOW, or reads `clock[0]`."""
    now = clock or [NOW]
    return Takeover(
        client, RecordingStore(client), lost_after=5, run_seconds=60, clock=lambda: now[0]
    )


def queue_job(store_redis: StoreRedis) -> str:
    """A recording and its job, queued as the API queues them; its ID."""
    now = utcnow()
    recording = Recording(
        recording_id=uuid.uuid4().hex, camera_id="lane-1", status=Status.QUEUED,
        frames_requested=10, event_time=now, received_at=now, updated_at=now,
        deadline=now + timedelta(minutes=5),
    )  # fmt: skip
    job = {"recording_id": recording.recording_id}
    message = record_message(Celery(set_as_current=False), job, recording.recording_id)

    async def create() -> None:
        client = store_redis.new_async()
        try:
            await AsyncRecordingStore(client).create(recording, None, 60, job_message=message)
        finally:
            await client.aclose()

    asyncio.run(create())
    return recording.recording_id


def body(message: bytes) -> list[Any]:
    """A queued message's [args, kwargs, embed]."""
    return json.loads(base64.b64decode(json.loads(message)["body"]))  # type: ignore[no-any-return]


def deliver(client: redis.Redis, delivered_at: float) -> tuple[str, str]:
    """A record job as kombu leaves it once delivered: in the unacked hash and index."""
    recording_id = uuid.uuid4().hex
    app = Celery(set_as_current=False)
    envelope = json.loads(record_message(app, {"recording_id": recording_id}, recording_id))
    tag = envelope["properties"]["delivery_tag"]
    client.hset(keys.UNACKED, tag, kombu_json.dumps([envelope, "", keys.RECORD_QUEUE]))
    client.zadd(keys.UNACKED_INDEX, {tag: delivered_at})
    client.hset(keys.recording(recording_id), mapping={"status": "running"})
    return tag, recording_id


def test_a_delivery_no_live_worker_holds_goes_back_first_in_line(client: redis.Redis) -> None:
    """An orphan leaves the unacked hash, is the next job taken, and reads as redelivered."""
    client.rpush(keys.RECORD_QUEUE, "older job")
    _, recording_id = deliver(client, NOW - 10)
    assert takeover(client).run_once("worker-a") == [recording_id]
    assert client.hlen(keys.UNACKED) == client.zcard(keys.UNACKED_INDEX) == 0
    # Workers BRPOP: the right end is taken first.
    message = json.loads(client.rpop(keys.RECORD_QUEUE))  # type: ignore[arg-type]
    assert message["headers"]["id"] == recording_id
    assert message["properties"]["delivery_info"]["redelivered"] is True
    assert client.hget(keys.recording(recording_id), "status") == Status.QUEUED.value.encode()


def test_a_delivery_a_live_worker_holds_stays(client: redis.Redis) -> None:
    """A worker that keeps beating keeps its jobs, however long they run."""
    tag, _ = deliver(client, NOW - 1000)
    takeover(client).record("worker-b", [tag])
    assert takeover(client).run_once("worker-a") == []
    assert client.hexists(keys.UNACKED, tag)


def test_a_fresh_delivery_is_left_for_its_worker_to_list(client: redis.Redis) -> None:
    """Delivered under lost_after ago: its worker may not have beaten since; not an orphan."""
    tag, _ = deliver(client, NOW - 1)
    assert takeover(client).run_once("worker-a") == []
    assert client.hexists(keys.UNACKED, tag)


def test_a_worker_whose_key_expired_loses_its_jobs_and_its_name(client: redis.Redis) -> None:
    """Once a worker's liveness key expires, its deliveries are orphans and it is forgotten."""
    tag, recording_id = deliver(client, NOW - 10)
    takeover(client).record("worker-b", [tag])
    client.delete(keys.worker_alive("worker-b"))  # what expiry does after lost_after
    assert takeover(client).run_once("worker-a") == [recording_id]
    assert not client.sismember(keys.WORKERS, "worker-b")


def test_only_one_worker_takes_over_at_a_time(client: redis.Redis) -> None:
    """While one worker holds the takeover lock, another's pass does nothing."""
    tag, _ = deliver(client, NOW - 10)
    client.set(keys.TAKEOVER_LOCK, "worker-b", px=5000)
    assert takeover(client).run_once("worker-a") == []
    assert client.hexists(keys.UNACKED, tag)
    assert client.get(keys.TAKEOVER_LOCK) == b"worker-b"


def test_a_job_whose_message_was_lost_is_queued_again(store_redis: StoreRedis) -> None:
    """A message gone from the queue and never in unacked (the BRPOP gap): once seen missing
    lost_after apart, the kept copy goes back first in line, marked redelivered, with the
    recording saying why; its earlier runs count as retries, not as dead workers."""
    client = store_redis.client
    recording_id = queue_job(store_redis)
    client.hset(keys.recording(recording_id), "deliveries", 2)
    client.delete(keys.RECORD_QUEUE)  # what a dropped connection after BRPOP leaves
    clock = [NOW]
    passes = takeover(client, clock)
    assert passes.run_once("worker-a") == []  # first seen missing: could be on its way
    clock[0] += 2.5
    assert passes.run_once("worker-a") == []
    clock[0] += 2.5
    assert passes.run_once("worker-a") == [recording_id]
    message = cast("bytes | None", client.rpop(keys.RECORD_QUEUE))
    assert message is not None
    envelope = json.loads(message)
    assert envelope["headers"]["id"] == recording_id
    assert envelope["properties"]["delivery_info"]["redelivered"] is True
    assert body(message)[1]["transient_retries"] == 2
    recording = client.hgetall(keys.recording(recording_id))
    assert recording[b"status"] == b"queued"
    assert recording[b"reason"] == LOST_REASON.encode()


def test_a_job_whose_message_is_queued_or_delivered_is_not_queued_again(
    store_redis: StoreRedis,
) -> None:
    """However long a job waits in the queue, or runs unacknowledged, it is not lost."""
    client = store_redis.client
    waiting = queue_job(store_redis)
    running = queue_job(store_redis)
    kept = cast("bytes", client.hget(keys.JOB_MESSAGES, running)).decode()
    assert client.lrem(keys.RECORD_QUEUE, 1, kept) == 1  # delivered: in unacked instead
    tag = "delivery-of-running"
    client.hset(keys.UNACKED, tag, kombu_json.dumps([json.loads(kept), "", keys.RECORD_QUEUE]))
    client.zadd(keys.UNACKED_INDEX, {tag: NOW})
    clock = [NOW]
    passes = takeover(client, clock)
    for _ in range(4):
        passes.record("worker-b", [tag])
        assert passes.run_once("worker-a") == []
        clock[0] += 5
    assert client.llen(keys.RECORD_QUEUE) == 1
    assert client.hget(keys.recording(waiting), "status") == b"queued"


def test_a_final_recording_keeps_no_job_message(store_redis: StoreRedis) -> None:
    """The kept copy goes when the recording is final: a final job is never queued again."""
    client = store_redis.client
    recording_id = queue_job(store_redis)
    assert client.hexists(keys.JOB_MESSAGES, recording_id)
    RecordingStore(client).update(recording_id, Status.COMPLETE, camera_id="lane-1")
    assert not client.hexists(keys.JOB_MESSAGES, recording_id)
    client.delete(keys.RECORD_QUEUE)
    clock = [NOW]
    passes = takeover(client, clock)
    for _ in range(3):
        assert passes.run_once("worker-a") == []
        clock[0] += 5
    assert client.llen(keys.RECORD_QUEUE) == 0
