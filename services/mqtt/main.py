"""MQTT ingest entry point: subscribe, accept events, stop cleanly on SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading

import redis

from services.common.framebuffer import FrameBuffer
from services.common.ingest import Ingest
from services.common.logconfig import configure_logging
from services.common.recordings import RecordingStore
from services.common.settings import Settings
from services.common.taskqueue import make_celery
from services.mqtt.bridge import MqttIngest, make_client

log = logging.getLogger(__name__)


def main(settings: Settings) -> None:
    """Run the MQTT ingest for every configured camera until SIGTERM/SIGINT."""
    configure_logging(settings.log_level)
    options = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    frames = redis.Redis.from_url(settings.frame_store_url, **options)
    state = redis.Redis.from_url(settings.state_store_url, **options)
    buffers = {camera: FrameBuffer(frames, camera) for camera in settings.camera_ids}
    ingest = Ingest(settings, RecordingStore(state), buffers, make_celery(settings))
    bridge = MqttIngest(settings, ingest, state, make_client(settings))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    bridge.start()
    log.info("MQTT ingest on %s, topic %s", settings.mqtt_url, bridge.topics.events)
    stop.wait()
    bridge.close()
    log.info("MQTT ingest stopped")
