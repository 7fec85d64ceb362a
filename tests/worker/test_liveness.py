"""Takeover: which deliveries are orphaned, and how one is put back (fakeredis; real:
tests/stores/test_real_redis.py)."""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from celery import Celery
from kombu.utils import json as kombu_json

from services.kernel import keys
from services.kernel.contracts import Status
from services.stores.recordings import RecordingStore
from services.stores.taskqueue import record_message
from services.worker.liveness import Takeover
from tests.support.storeredis import StoreRedis

NOW = 1_800_000_000.0


@pytest.fixture
def client(store_redis: StoreRedis) -> redis.Redis:
    """The state store of the test."""
    return store_redis.client


def takeover(client: redis.Redis) -> Takeover:
    """A takeover whose clock stands still at NOW."""
    return Takeover(client, RecordingStore(client), lost_after=5, run_seconds=60, clock=lambda: NOW)


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
