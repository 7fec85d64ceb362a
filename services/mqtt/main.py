"""MQTT ingest entry point: subscribe, accept events, stop cleanly on SIGTERM."""

from __future__ import annotations

import logging

import redis

from services.ingest.events import make_ingest, store_clients
from services.kernel.logconfig import configure_logging
from services.kernel.settings import Settings
from services.mqtt.bridge import MqttIngest, make_client
from services.runtime.lifecycle import Lifecycle

log = logging.getLogger(__name__)

TIMEOUT = 5.0  # seconds to connect to or hear from a store before retrying the message


def main(settings: Settings) -> None:
    """Run the MQTT ingest for every configured camera until SIGTERM/SIGINT."""
    configure_logging(settings.log_level)
    with Lifecycle("mqtt") as life:
        state_store = redis.Redis.from_url(
            settings.state_store_url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        life.on_close(state_store.close)
        ingest = make_ingest(settings, *store_clients(settings, TIMEOUT), owns=True)
        bridge = MqttIngest(settings, ingest, state_store, make_client(settings))
        bridge.start()
        life.on_close(bridge.close)
        log.info("MQTT ingest on %s, topic %s", settings.mqtt_url, bridge.topics.events)
        life.stop.wait()
    log.info("MQTT ingest stopped")
