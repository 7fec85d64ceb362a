"""Capture entry point: open the source, run the loop, stop cleanly on SIGTERM."""

from __future__ import annotations

import functools
import logging

import redis
from prometheus_client import start_http_server

from services.capture.metrics import CaptureMetrics
from services.capture.service import Capture
from services.capture.source import open_source
from services.capture.spec import parse_source
from services.kernel.logconfig import configure_logging
from services.kernel.settings import Settings
from services.runtime.heap import keep_heap
from services.runtime.lifecycle import Lifecycle
from services.stores.cameras import CameraRegistry
from services.stores.framebuffer import FrameBuffer

log = logging.getLogger(__name__)


def main(settings: Settings) -> None:
    """Capture `settings.source` into the stream of `settings.camera_id` until SIGTERM/SIGINT."""
    configure_logging(settings.log_level)
    keep_heap()  # before the reader thread starts: its arena takes the same settings
    spec = parse_source(settings.source)
    with Lifecycle("capture") as life:
        client = redis.Redis.from_url(
            settings.frame_store_url, socket_timeout=5, socket_connect_timeout=5
        )
        life.on_close(client.close)
        metrics = CaptureMetrics()
        if settings.metrics_port:
            start_http_server(settings.metrics_port, registry=metrics.registry)
        capture = Capture(
            settings,
            spec=spec,
            buffer=FrameBuffer(client, settings.camera_id),
            registry=CameraRegistry(client),
            opener=functools.partial(
                open_source, timeout=settings.source_timeout, frame_format=settings.frame_format
            ),
            metrics=metrics,
        )
        log.info("camera %s: capturing %s", settings.camera_id, spec.shown)
        capture.run(life.stop)
        log.info("camera %s: stopped after %d frames", settings.camera_id,
                 capture.counters.frames_read)  # fmt: skip
