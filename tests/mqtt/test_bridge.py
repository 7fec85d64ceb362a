"""The ingest's handling of one message, with small explicit fakes for the broker and stores."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, cast

import paho.mqtt.client as mqtt
import redis

from services.ingest.events import Accepted, Ingest
from services.kernel.contracts import EventAccepted, EventIn, Status
from services.kernel.settings import Settings
from services.mqtt.bridge import MqttIngest


@dataclass
class CountingIngest:
    """Accepts every event with the same recording, counting how often it was asked."""

    calls: int = 0

    async def accept(self, event: EventIn, key: str | None) -> Accepted:
        """One accepted event."""
        self.calls += 1
        answer = EventAccepted(recording_id="a" * 32, status=Status.QUEUED, status_url="/x")
        return Accepted(answer, "lane-1", duplicate=False)

    async def close(self) -> None:
        """Nothing to close."""


@dataclass
class FlakyState:
    """A state store whose first write fails, as a Redis that is restarting."""

    failures: int = 1
    written: dict[str, str] = field(default_factory=dict)

    def register_script(self, script: str) -> None:
        """The bridge's recording store registers its scripts; none runs here."""

    def hset(self, key: str, name: str, value: str) -> int:
        """Fail while failures are left, then store."""
        if self.failures:
            self.failures -= 1
            raise redis.ConnectionError("restarting")
        self.written[name] = value
        return 1


@dataclass
class RecordingClient:
    """A paho client that keeps what it was asked to publish."""

    published: list[tuple[str, str]] = field(default_factory=list)
    on_connect: Any = None
    on_disconnect: Any = None
    on_connect_fail: Any = None
    on_message: Any = None

    def publish(self, topic: str, payload: str, qos: int) -> None:
        """Keep the message."""
        self.published.append((topic, payload))


def test_a_retry_after_the_event_was_accepted_never_accepts_it_again() -> None:
    """The state store fails after accept: only the reply is retried, one recording."""
    ingest, state, client = CountingIngest(), FlakyState(), RecordingClient()
    bridge = MqttIngest(
        Settings(), cast(Ingest, ingest), cast(redis.Redis, state), cast(mqtt.Client, client)
    )
    message = mqtt.MQTTMessage(topic=b"sco/lane-1/events")
    message.payload = json.dumps({"transaction_id": None}).encode()
    loop = asyncio.new_event_loop()
    try:
        assert bridge.handle(message, loop)
    finally:
        loop.close()
    assert ingest.calls == 1
    assert state.written == {"a" * 32: "lane-1"}
    assert len([topic for topic, _ in client.published if "/recordings/" in topic]) == 2
