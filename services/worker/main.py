"""Worker entry point: wire the recorder into a Celery app and run `celery worker`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import cache

import redis
from celery import Celery
from prometheus_client import start_http_server

from services.kernel import keys
from services.kernel.logconfig import configure_logging
from services.kernel.settings import Settings
from services.kernel.signing import Signer
from services.runtime.heap import keep_heap
from services.stores.framebuffer import FrameBuffer
from services.stores.recordings import RecordingStore
from services.stores.retention import RetentionStore
from services.stores.storage import Storage
from services.stores.taskqueue import make_celery
from services.worker.encoder import make_encoder
from services.worker.liveness import Takeover, install
from services.worker.metrics import serving_registry
from services.worker.prune import Pruner
from services.worker.recorder import Recorder
from services.worker.tasks import register_maintenance, register_tasks

log = logging.getLogger(__name__)

# Frames arrive as multi-megabyte replies: read them a megabyte per system call, not 64 kB.
FRAME_READ_SIZE = 1024 * 1024


def build_app(settings: Settings) -> Celery:
    """A Celery app whose record task writes into the configured recordings root."""
    keep_heap()  # before the pool forks: its processes inherit the allocator's settings
    app = make_celery(settings)
    frames = redis.Redis.from_url(
        settings.frame_store_url, health_check_interval=10, socket_read_size=FRAME_READ_SIZE
    )
    state_store = redis.Redis.from_url(settings.state_store_url, health_check_interval=10)
    store = RecordingStore(state_store)
    run_seconds = settings.task_time_limit + settings.takeover_seconds
    storage = Storage(settings.output_dir.resolve(), settings.recordings_group)
    recorder = Recorder(
        buffer_of=cache(lambda camera_id: FrameBuffer(frames, camera_id)),
        store=store,
        storage=storage,
        encode=make_encoder(settings.png_encoder, settings.png_compression),
        encoder_name=settings.png_encoder,
        signer=signer_of(settings),
        shared=storage.shared_frames(f"{settings.png_encoder}-{settings.png_compression}"),
        settle_timeout=settings.settle_timeout,
        page_bytes=settings.read_page_bytes,
        max_deliveries=settings.max_deliveries,
        run_seconds=run_seconds,
    )
    register_tasks(app, recorder, store)
    pruner = Pruner(settings, RetentionStore(state_store), recorder.storage)
    register_maintenance(app, pruner, store)
    takeover_client = redis.Redis.from_url(
        settings.state_store_url, socket_timeout=settings.worker_heartbeat * 2,
        socket_connect_timeout=settings.worker_heartbeat * 2,
    )  # fmt: skip
    takeover = Takeover(
        takeover_client,
        RecordingStore(takeover_client),
        settings.worker_lost_after,
        run_seconds,
        written=recorder.storage.find,
    )
    install(app, takeover, settings.worker_heartbeat)
    return app


def signer_of(settings: Settings) -> Callable[[], Signer]:
    """The box's signing key, made now if it can be: a full disk defers that to the first
    recording, which then waits for space like its frames do."""
    load = cache(lambda: Signer.load_or_create(settings.keys_dir.resolve()))
    try:
        load()
    except OSError as error:
        log.warning("signing key not made yet (%s); the first recording will make it", error)
    return load


def main(settings: Settings) -> None:
    """Run a Celery worker with `settings.workers` processes until SIGTERM (warm shutdown)."""
    configure_logging(settings.log_level)
    # Encoding is bulk work; a late frame is lost evidence. Pool processes inherit this.
    os.nice(settings.worker_nice)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=serving_registry())
    # A folder younger than a pin may still be adopted by its job's next attempt.
    storage = Storage(settings.output_dir)
    removed = storage.clean_staging(older_than=max(settings.task_time_limit * 2, settings.pin_ttl))
    if removed:
        log.info("removed %d staging folders left by an earlier worker", removed)
    storage.prune_shared(older_than=settings.pin_ttl)  # the prune pass does it from now on
    app = build_app(settings)
    app.worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            f"--concurrency={settings.workers}",
            f"--queues={keys.RECORD_QUEUE},{keys.MAINTENANCE_QUEUE}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
