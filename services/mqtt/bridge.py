"""MQTT ingest: events published on `<prefix>/<camera_id>/events` (or, for every camera of a
lane, `<prefix>/lanes/<lane_id>/events`) are accepted like HTTP ones.

Each message is acknowledged only after its event was accepted (or dead-lettered), so a
crash in between makes the broker deliver it again; idempotency by transaction ID turns that
second delivery into the same recording. Replies go to `<prefix>/<camera>/recordings/<id>`,
and a lane event's 202 body to `<prefix>/lanes/<lane_id>/events/<event_id>`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import queue
import re
import ssl
import threading
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from services.ingest.events import Accepted, EventRefusedError, Ingest, LaneAccepted
from services.kernel import keys
from services.kernel.backoff import compute_backoff
from services.kernel.contracts import TRANSACTION_ID_PATTERN, EventIn, Recording, utcnow
from services.kernel.outages import TRANSIENT, is_outage
from services.kernel.settings import Settings, describe_errors
from services.stores.recordings import RecordingStore

log = logging.getLogger(__name__)

QOS = 1
MAX_RETRY_SECONDS = 30.0
WATCH_SECONDS = 0.25


class DeadLetterError(ValueError):
    """A message that can never become an event; it goes to the dead-letter topic."""


class QueueBusyError(Exception):
    """The event is good but the recorder asked to come back later (its queue is full)."""


@dataclass(frozen=True)
class Topics:
    """The topic layout under one prefix."""

    prefix: str
    dead_letter: str

    @property
    def events(self) -> list[str]:
        """The subscriptions: every camera's events, and every lane's."""
        return [f"{self.prefix}/+/events", f"{self.prefix}/lanes/+/events"]

    def target_of(self, topic: str) -> tuple[str, str]:
        """What an events topic names: ("camera_id", camera) or ("lane_id", lane)."""
        parts = (
            topic[len(self.prefix) + 1 :].split("/") if topic.startswith(self.prefix + "/") else []
        )
        if len(parts) == 2 and parts[1] == "events":  # noqa: PLR2004
            return "camera_id", parts[0]
        if len(parts) == 3 and parts[0] == "lanes" and parts[2] == "events":  # noqa: PLR2004
            return "lane_id", parts[1]
        raise DeadLetterError(f"not an events topic: {topic!r}")

    def lane_reply(self, lane_id: str, event_id: str) -> str:
        """Where a lane event's 202 body is published."""
        return f"{self.prefix}/lanes/{lane_id}/events/{event_id}"

    def reply(self, camera_id: str, recording_id: str) -> str:
        """Where a recording's status is published."""
        return f"{self.prefix}/{camera_id}/recordings/{recording_id}"


def make_client(settings: Settings) -> mqtt.Client:
    """A paho client for the configured broker: version, credentials, TLS, backoff."""
    v5 = settings.mqtt_protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=settings.mqtt_client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=True,
    )
    if settings.mqtt_username:
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        client.username_pw_set(settings.mqtt_username, password)
    url = urlparse(str(settings.mqtt_url))
    if url.scheme == "mqtts" or settings.mqtt_ca_file:
        client.tls_set(
            ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
            certfile=str(settings.mqtt_cert_file) if settings.mqtt_cert_file else None,
            keyfile=str(settings.mqtt_key_file) if settings.mqtt_key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(settings: Settings) -> Properties | None:
    """MQTT 5: keep the session (and its queued messages) while we are away."""
    if settings.mqtt_protocol != "5":
        return None
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho is unannotated here
    properties.SessionExpiryInterval = settings.mqtt_session_expiry
    return properties


class MqttIngest:
    """Subscribes to events, accepts them, replies, and reports final states."""

    def __init__(
        self, settings: Settings, ingest: Ingest, state_store: redis.Redis, client: mqtt.Client
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.state_store = state_store
        self.store = RecordingStore(state_store)
        self.client = client
        self.topics = Topics(settings.mqtt_topic_prefix, settings.mqtt_dead_letter_topic)
        self.inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.stop = threading.Event()
        self.connected = threading.Event()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message

    def start(self) -> list[threading.Thread]:
        """Connect (retrying in the background) and start the worker threads."""
        url = urlparse(str(self.settings.mqtt_url))
        default_port = 8883 if url.scheme == "mqtts" else 1883
        self.client.connect_async(
            url.hostname or "localhost",
            url.port or default_port,
            keepalive=30,
            clean_start=False,
            properties=connect_properties(self.settings),
        )
        self.client.loop_start()
        threads = [
            threading.Thread(target=self._process, name="mqtt-ingest", daemon=True),
            threading.Thread(target=self._watch, name="mqtt-final", daemon=True),
        ]
        for thread in threads:
            thread.start()
        return threads

    def close(self) -> None:
        """Stop taking messages; unacknowledged ones are redelivered to the next session."""
        self.stop.set()
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT broker refused the connection: %s", reason)
            return
        log.info("MQTT connected (session present: %s)", flags.session_present)
        client.subscribe([(topic, QOS) for topic in self.topics.events])
        self.connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.connected.clear()
        if not self.stop.is_set():
            log.warning("MQTT disconnected (%s); reconnecting with backoff", reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.warning("MQTT broker %s unreachable; retrying with backoff", self.settings.mqtt_url)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # The network thread only queues: accepting talks to Redis and may have to wait.
        self.inbox.put(message)

    def _process(self) -> None:
        # Ingest is asyncio code (the API's hot path); this thread gives it a loop of its own.
        # It also says the ingest is alive: health comes from the loop that does the work.
        loop = asyncio.new_event_loop()
        try:
            while not self.stop.is_set():
                self._say_alive()
                try:
                    message = self.inbox.get(timeout=WATCH_SECONDS)
                except queue.Empty:
                    continue
                if self.handle(message, loop):
                    self.client.ack(message.mid, message.qos)
            loop.run_until_complete(self.ingest.close())
        finally:
            loop.close()

    def _say_alive(self) -> None:
        """Refresh the key `sco-recorder check mqtt` reads, while connected."""
        if not self.connected.is_set():
            return
        try:
            alive = keys.mqtt_alive(self.settings.mqtt_client_id)
            self.state_store.set(alive, "1", ex=keys.MQTT_ALIVE_SECONDS)
        except TRANSIENT as error:
            log.debug("could not say the ingest is alive: %s", error)

    def handle(self, message: mqtt.MQTTMessage, loop: asyncio.AbstractEventLoop) -> bool:
        """Handle a message, waiting out store outages and a full queue rather than losing or
        refusing it; any other failure dead-letters it, so no message can stop the ingest.

        Once its event is accepted, only the replies are retried: a retry never makes a
        second recording. False when stopped first: the message stays unacknowledged.
        """
        accepted: Accepted | LaneAccepted | None = None
        attempt = 0
        while not self.stop.is_set():
            try:
                if accepted is None:
                    accepted = loop.run_until_complete(self.accept(message))
                if accepted is not None:
                    self.reply(accepted)
            except Exception as error:
                if not (isinstance(error, QueueBusyError) or is_outage(error)):
                    log.exception("dead-lettering a message that failed on %s", message.topic)
                    reason = f"could not be handled: {type(error).__name__}: {error}"
                    self.dead_letter(message, reason)
                    return True
                delay = compute_backoff(attempt, base=0.5, cap=MAX_RETRY_SECONDS)
                log.warning("%s; retrying in %.1f s", error, delay)
                self.stop.wait(delay)
                attempt += 1
            else:
                return True
        return False

    async def accept(self, message: mqtt.MQTTMessage) -> Accepted | LaneAccepted | None:
        """The message's event accepted; None if it was dead-lettered instead.

        Raises QueueBusyError for a full queue: the event is good, only early.
        """
        try:
            event, key = self.parse(message)
            if event.lane_id is not None:
                return await self.ingest.accept_lane(event, key)
            return await self.ingest.accept(event, key)
        except EventRefusedError as error:
            if error.retry_after is not None:
                raise QueueBusyError(error.reason) from error
            self.dead_letter(message, str(error))
        except DeadLetterError as error:
            self.dead_letter(message, str(error))
        return None

    def reply(self, accepted: Accepted | LaneAccepted) -> None:
        """Publish the 202 body, and watch for the recordings' final statuses."""
        if isinstance(accepted, LaneAccepted):
            lane = accepted.answer
            self.publish(self.topics.lane_reply(lane.lane_id, lane.event_id),
                         lane.model_dump(mode="json"))  # fmt: skip
            for recording in lane.recordings:
                if not recording.status.is_final:
                    self.state_store.hset(
                        keys.MQTT_PENDING, recording.recording_id, recording.camera_id
                    )
            return
        answer = accepted.answer
        reply = self.topics.reply(accepted.camera_id, answer.recording_id)
        self.publish(reply, answer.model_dump(mode="json"))
        if not answer.status.is_final:
            # A redelivered duplicate registers again: its first copy may have died here.
            self.state_store.hset(keys.MQTT_PENDING, answer.recording_id, accepted.camera_id)

    def parse(self, message: mqtt.MQTTMessage) -> tuple[EventIn, str | None]:
        """The event in a message, its camera (or lane) taken from the topic; DeadLetterError
        if bad."""
        field, named = self.topics.target_of(message.topic)
        if len(message.payload) > self.settings.max_body_bytes:
            raise DeadLetterError(f"payload larger than {self.settings.max_body_bytes} bytes")
        try:
            body = json.loads(message.payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DeadLetterError(f"payload is not JSON: {error}") from None
        except RecursionError:
            raise DeadLetterError("payload is nested too deeply to read") from None
        if not isinstance(body, dict):
            raise DeadLetterError("payload must be a JSON object")
        if body.setdefault(field, named) != named:
            raise DeadLetterError(f"{field} {body[field]!r} differs from the topic's")
        try:
            event = EventIn.model_validate(body)
        except ValidationError as error:
            raise DeadLetterError(describe_errors(error)) from None
        key = _idempotency_key(message)
        if key is not None and not re.match(TRANSACTION_ID_PATTERN, key):
            raise DeadLetterError(f"Idempotency-Key must match {TRANSACTION_ID_PATTERN}")
        return event, key or event.transaction_id

    def dead_letter(self, message: mqtt.MQTTMessage, reason: str) -> None:
        """Publish the message and why it was refused; never drop it silently."""
        log.warning("dead-lettered a message on %s: %s", message.topic, reason)
        try:
            payload = {"payload": message.payload.decode()}
        except UnicodeDecodeError:
            payload = {"payload_base64": base64.b64encode(message.payload).decode()}
        body = {"topic": message.topic, "reason": reason, "received_at": utcnow().isoformat()}
        self.publish(self.topics.dead_letter, {**body, **payload})

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        """Publish a JSON reply at QoS 1 (paho queues it while the broker is away)."""
        self.client.publish(topic, json.dumps(body), qos=QOS)

    def _watch(self) -> None:
        """Publish each MQTT recording's final status once it has one."""
        while not self.stop.wait(WATCH_SECONDS):
            try:
                self.report_final()
            except TRANSIENT as error:
                log.debug("final-state watch paused: %s", error)

    def report_final(self) -> None:
        """One pass over the recordings still waiting for a final status."""
        pending = cast("dict[bytes, bytes]", self.state_store.hgetall(keys.MQTT_PENDING))
        for raw_id, raw_camera in pending.items():
            recording_id, camera_id = raw_id.decode(), raw_camera.decode()
            recording: Recording | None = self.store.get(recording_id)
            if recording is not None and not recording.status.is_final:
                continue
            if recording is not None:
                reply = self.topics.reply(camera_id, recording_id)
                self.publish(reply, recording.model_dump(mode="json"))
            self.state_store.hdel(keys.MQTT_PENDING, recording_id)


def _idempotency_key(message: mqtt.MQTTMessage) -> str | None:
    """MQTT 5 user property `Idempotency-Key`, the header's counterpart."""
    properties = getattr(message, "properties", None)
    for name, value in getattr(properties, "UserProperty", None) or []:
        if name.lower() == "idempotency-key":
            return str(value)
    return None
