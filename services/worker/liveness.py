"""Worker liveness and takeover: a job whose worker dies is handed to another in seconds.

kombu's Redis transport keeps every delivered, unacknowledged message in a hash until its
ack, and gives it back only after the visibility timeout, which must exceed the longest job
(minutes). So each worker lists the delivery tags it holds under a key that expires unless it
keeps writing it (every `SCO_WORKER_HEARTBEAT` s, expiring after `SCO_WORKER_LOST_AFTER` s).
Every worker also looks, under a lock, for messages that no live worker holds and puts them
back at the head of the queue, puts back the jobs whose message was lost on its way to a
worker (stores/lua/lost.lua), and settles recordings that passed their deadline.
docs/reliability.md says why this and not a short visibility timeout or RabbitMQ.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import redis
from celery import Celery, bootsteps
from celery.signals import worker_shutdown
from kombu.utils import json as kombu_json

from services.kernel import keys
from services.kernel.contracts import utcnow
from services.stores.recordings import RecordingStore, WrittenLookup
from services.stores.scripts import LOST
from services.stores.taskqueue import queued_again, redelivered

log = logging.getLogger(__name__)

TagSource = Callable[[], Iterable[str]]


def worker_id(hostname: str) -> str:
    """A name no other worker process has, even on the same host with the same node name."""
    return f"{hostname}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


@dataclass
class Takeover:
    """Hands the jobs of dead workers to live ones; one pass at a time across workers."""

    client: redis.Redis
    store: RecordingStore
    lost_after: float
    run_seconds: float
    written: WrittenLookup | None = None
    clock: Callable[[], float] = field(default=time.time)
    # Recordings whose job message was nowhere, and since when (this worker's passes), and
    # when this worker last looked: the look reads the whole queue (37 ms at 10,000 jobs).
    missing: dict[str, float] = field(default_factory=dict)
    looked_at: float = float("-inf")

    def __post_init__(self) -> None:
        self._lost = self.client.register_script(LOST.source)

    def record(self, worker: str, tags: Iterable[str]) -> None:
        """Say that this worker is alive and holds these deliveries, for lost_after seconds."""
        body = json.dumps({"pid": os.getpid(), "tags": sorted(tags)})
        pipe = self.client.pipeline(transaction=False)
        pipe.set(keys.worker_alive(worker), body, px=round(self.lost_after * 1000))
        pipe.sadd(keys.WORKERS, worker)
        pipe.execute()

    def forget(self, worker: str) -> None:
        """A worker that stops cleanly leaves no liveness behind."""
        self.client.delete(keys.worker_alive(worker))
        self.client.srem(keys.WORKERS, worker)

    def run_once(self, worker: str) -> list[str]:
        """Requeue orphaned jobs and settle overdue recordings, if no other worker is at it."""
        lock = round(self.lost_after * 1000)
        if not self.client.set(keys.TAKEOVER_LOCK, worker, nx=True, px=lock):
            return []
        try:
            requeued = [job for tag in self.orphans() if (job := self.requeue(tag))]
            requeued += self.restore_lost()
            self.store.settle_overdue(utcnow(), self.written)
            return requeued
        finally:
            if self.client.get(keys.TAKEOVER_LOCK) == worker.encode():
                self.client.delete(keys.TAKEOVER_LOCK)

    def live_tags(self) -> set[str]:
        """Delivery tags held by workers that are alive; forgets workers that are not."""
        workers = sorted(
            member.decode() for member in cast("set[bytes]", self.client.smembers(keys.WORKERS))
        )
        if not workers:
            return set()
        bodies = cast(
            "list[bytes | None]", self.client.mget([keys.worker_alive(w) for w in workers])
        )
        tags: set[str] = set()
        for worker, body in zip(workers, bodies, strict=True):
            if body is None:
                log.warning("worker %s stopped answering; taking its jobs back", worker)
                self.client.srem(keys.WORKERS, worker)
            else:
                tags.update(json.loads(body)["tags"])
        return tags

    def orphans(self) -> list[str]:
        """Delivered messages that no live worker holds, delivered long enough ago that their
        worker would have listed them by now."""
        delivered_before = self.clock() - self.lost_after
        live = self.live_tags()
        candidates = cast(
            "list[bytes]", self.client.zrangebyscore(keys.UNACKED_INDEX, "-inf", delivered_before)
        )
        return [tag for raw in candidates if (tag := raw.decode()) not in live]

    def requeue(self, tag: str) -> str | None:
        """Put one orphaned record job back at the head of its queue, as kombu restores a
        message (marked redelivered); the recording ID, or None if it was not ours to move."""
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(keys.UNACKED)  # type: ignore[no-untyped-call]  # redis-py leaves it bare
                raw = cast("bytes | None", pipe.hget(keys.UNACKED, tag))
                message = _record_message(raw)
                if message is None:
                    pipe.unwatch()
                    return None
                pipe.multi()
                pipe.zrem(keys.UNACKED_INDEX, tag)
                pipe.hdel(keys.UNACKED, tag)
                # RPUSH: workers take from the right, so this job is the next one taken.
                pipe.rpush(keys.RECORD_QUEUE, kombu_json.dumps(message))
                pipe.execute()
            except redis.WatchError:
                return None  # acknowledged or moved meanwhile
        recording_id = str(message["headers"]["id"])
        deadline = utcnow() + timedelta(seconds=2 * self.run_seconds)
        self.store.requeued(
            recording_id, "its worker stopped answering; handed to another worker", deadline
        )
        log.warning("recording %s: its worker died; job queued again", recording_id)
        return recording_id

    def restore_lost(self) -> list[str]:
        """Queue again, first in line, the jobs whose message is in neither the queue nor
        unacked (lost.lua says how one is lost): those this worker already saw missing at
        least lost_after ago. A message on its way from the queue to unacked is missing for
        a moment only; one lost stays missing. Looks every lost_after / 2 seconds at most.
        The recording IDs queued again."""
        now = self.clock()
        if now - self.looked_at < self.lost_after / 2:
            return []
        self.looked_at = now
        due = [rid for rid, since in self.missing.items() if now - since >= self.lost_after]
        pipe = self.client.pipeline(transaction=False)
        for recording_id in due:
            pipe.hget(keys.JOB_MESSAGES, recording_id)
            pipe.hget(keys.recording(recording_id), "deliveries")
        replies = pipe.execute() if due else []
        restore: list[str] = []
        for recording_id, message, runs in zip(due, replies[::2], replies[1::2], strict=True):
            if message is not None:
                restore += [recording_id, queued_again(message, int(runs or 0))]
        script_keys, args = LOST.bind(
            queue=keys.RECORD_QUEUE, unacked=keys.UNACKED, jobs=keys.JOB_MESSAGES,
            recording_prefix=keys.recording(""), restore=restore,
        )  # fmt: skip
        restored_raw, missing_raw = self._lost(keys=script_keys, args=args)
        restored = [raw.decode() for raw in restored_raw]
        missing = [raw.decode() for raw in missing_raw]
        self.missing = {
            recording_id: self.missing.get(recording_id, now) for recording_id in missing
        }
        deadline = utcnow() + timedelta(seconds=2 * self.run_seconds)
        for recording_id in restored:
            self.store.requeued(recording_id, LOST_REASON, deadline)
            log.warning("recording %s: %s", recording_id, LOST_REASON)
        return restored


LOST_REASON = "its job message was lost on its way to a worker; queued again"


def _record_message(raw: bytes | None) -> dict[str, Any] | None:
    """The message of an unacked entry if it is a record job, marked as redelivered."""
    if raw is None:
        return None
    message, _exchange, _routing_key = kombu_json.loads(raw)
    headers = message.get("headers") or {}
    if headers.get("task") != keys.RECORD_TASK:
        return None
    return redelivered(message)


class Heartbeat:
    """The thread that keeps a worker alive in the others' eyes and takes over dead ones' jobs.

    A thread of the worker's main process, not a timer of its event loop: during a warm
    shutdown the event loop stops while jobs still finish, and those must not look orphaned.
    """

    def __init__(self, takeover: Takeover, worker: str, tags: TagSource, interval: float) -> None:
        self.takeover = takeover
        self.worker = worker
        self.tags = tags
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sco-liveness", daemon=True)

    def start(self) -> None:
        """Begin beating (once; later calls do nothing)."""
        if not self.thread.is_alive() and not self.stop.is_set():
            self.thread.start()

    def close(self) -> None:
        """Stop beating and leave no liveness key behind."""
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=self.interval * 2)
        try:
            self.takeover.forget(self.worker)
        except redis.RedisError:
            log.debug("could not remove the liveness key of %s", self.worker, exc_info=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.takeover.record(self.worker, self.tags())
                self.takeover.run_once(self.worker)
            except (redis.RedisError, OSError) as error:
                log.warning("liveness: %s", error)
            self.stop.wait(self.interval)


def held_tags(consumer: Any) -> list[str]:
    """The delivery tags the worker's task channel has not acknowledged yet: running jobs,
    jobs waiting in the pool, and retries waiting for their countdown."""
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is None:
        return []
    # kombu's virtual QoS keeps them in `_delivered`; a copy is atomic under the GIL.
    delivered = task_consumer.channel.qos._delivered  # no public accessor
    return list(delivered.copy())


def install(app: Celery, takeover: Takeover, interval: float) -> None:
    """Beat from the worker's main process once its task consumer runs; stop at shutdown."""

    class Liveness(bootsteps.StartStopStep):
        """Starts the heartbeat thread the first time the consumer starts."""

        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, consumer: Any, **kwargs: Any) -> None:
            super().__init__(consumer, **kwargs)
            self.heartbeat: Heartbeat | None = None

        def start(self, consumer: Any) -> None:
            if self.heartbeat is not None:
                return
            heartbeat = Heartbeat(
                takeover, worker_id(consumer.hostname), lambda: held_tags(consumer), interval
            )
            worker_shutdown.connect(lambda **_: heartbeat.close(), weak=False)
            heartbeat.start()
            self.heartbeat = heartbeat

    app.steps["consumer"].add(Liveness)
