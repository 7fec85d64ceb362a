"""MQTT ingest against a real mosquitto broker started on a free port (never the machine's 1883)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from services.kernel.settings import Settings
from services.runtime.launcher import service_env
from services.runtime.redisserver import free_port
from tests.support.frames import assert_right_frames, load_manifest
from tests.support.observer import StreamObserver
from tests.support.processes import Service, start_worker
from tests.support.servers import Servers
from tests.support.waiting import wait_final

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("session_worker")]

TIMEOUT = 30.0


def mosquitto_binary() -> str:
    """Debian's mosquitto (in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if found is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto")
    return found


class Broker:
    """A mosquitto process with persistence, restartable on the same port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
            f"log_dest file {directory}/mosquitto.log\n"
        )

    @property
    def url(self) -> str:
        """mqtt:// URL."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        """Start and wait until the port accepts connections."""
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.directory / "mosquitto.conf")]
        )
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop (saving its persistent sessions)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh broker for the test."""
    started = Broker(tmp_path / "mosquitto").start()
    yield started
    started.stop()


@dataclass
class Peer:
    """The cashier system's side: publishes events, collects every message under `sco/`."""

    broker: Broker
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cashier-test")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda client, *_: client.subscribe("sco/#", qos=1)
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", self.broker.port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def publish(self, camera_id: str, payload: bytes | str) -> None:
        """Publish one event at QoS 1 and wait until the broker has it."""
        self.client.publish(f"sco/{camera_id}/events", payload, qos=1).wait_for_publish(10)

    def on(self, topic_part: str) -> list[dict[str, object]]:
        """Decoded JSON messages whose topic contains `topic_part`."""
        with self.lock:
            return [json.loads(body) for topic, body in self.messages if topic_part in topic]

    def wait_for(
        self, topic_part: str, count: int, timeout: float = TIMEOUT
    ) -> list[dict[str, object]]:
        """Wait until `count` messages on matching topics arrived."""
        deadline = time.monotonic() + timeout
        while len(found := self.on(topic_part)) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} on {topic_part}"
            time.sleep(0.05)
        return found

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def peer(broker: Broker) -> Iterator[Peer]:
    """A connected cashier-system client."""
    connected = Peer(broker)
    yield connected
    connected.close()


def mqtt_settings(settings: Settings, broker: Broker, protocol: str = "5") -> Settings:
    """The test's settings plus the broker, a client ID of the test's own."""
    return settings.model_copy(
        update={
            "mqtt_url": broker.url,
            "mqtt_protocol": protocol,
            "mqtt_client_id": f"ingest-{settings.camera_id}",
        }
    )


def start_ingest(settings: Settings, log: Path) -> Service:
    """`sco-recorder mqtt`, subscribed and ready."""
    service = Service("mqtt", settings, log)
    service.wait_for_log("MQTT connected")
    return service


def test_a_published_event_is_recorded_with_the_right_frames(
    settings: Settings,
    broker: Broker,
    peer: Peer,
    tmp_path: Path,
    api_factory: Callable[[Settings], httpx.Client],
    capture_factory: Callable[[Settings], Service],
    observer_factory: Callable[[str], StreamObserver],
) -> None:
    """Publish → queued reply → complete reply; the recording holds the N frames before it."""
    settings = mqtt_settings(settings, broker)
    observer = observer_factory(settings.camera_id)
    capture_factory(settings)
    client = api_factory(settings)
    ingest = start_ingest(settings, tmp_path / "mqtt.log")
    try:
        observer.wait_for(30)
        body = {"transaction_id": "T-mqtt", "metadata": {"sku": "42"}}
        peer.publish(settings.camera_id, json.dumps(body))
        replies = peer.wait_for("/recordings/", 2)
    finally:
        ingest.stop()
    assert [reply["status"] for reply in replies] == ["queued", "complete"]
    recording = wait_final(client, str(replies[0]["recording_id"]))
    manifest = load_manifest(recording)
    assert manifest["metadata"] == {"sku": "42"}
    assert_right_frames(manifest, observer)


def test_a_lane_event_on_the_lanes_topic_records_every_camera_of_the_lane(
    settings: Settings,
    broker: Broker,
    peer: Peer,
    tmp_path: Path,
    capture_factory: Callable[[Settings], Service],
    observer_factory: Callable[[str], StreamObserver],
) -> None:
    """`sco/lanes/<lane>/events`: the lane event's 202 body on its own topic, then each
    camera's final status on that camera's recordings topic, each with its exact frames."""
    cameras = [settings.camera_id, f"{settings.camera_id}-bag"]
    lane = f"{settings.camera_id}-lane"
    settings = mqtt_settings(settings, broker).model_copy(
        update={"cameras": cameras, "lanes": {lane: cameras}}
    )
    observers = {camera: observer_factory(camera) for camera in cameras}
    for camera in cameras:
        capture_factory(settings.model_copy(update={"camera_id": camera}))
    ingest = start_ingest(settings, tmp_path / "mqtt.log")
    try:
        for observer in observers.values():
            observer.wait_for(30)
        topic = f"sco/lanes/{lane}/events"
        peer.client.publish(
            topic, json.dumps({"transaction_id": "T-lane"}), qos=1
        ).wait_for_publish(10)
        (accepted,) = peer.wait_for(f"sco/lanes/{lane}/events/", 1)
        finals = peer.wait_for("/recordings/", 2)
    finally:
        ingest.stop()
    assert accepted["lane_id"] == lane
    assert [recording["camera_id"] for recording in accepted["recordings"]] == cameras  # type: ignore[attr-defined]
    assert {final["status"] for final in finals} == {"complete"}
    assert {final["event_id"] for final in finals} == {accepted["event_id"]}
    for final in finals:
        assert_right_frames(load_manifest(final), observers[str(final["camera_id"])])


def test_malformed_messages_go_to_the_dead_letter_topic_and_the_service_lives_on(
    settings: Settings, broker: Broker, peer: Peer, tmp_path: Path
) -> None:
    """Twenty bad payloads give twenty dead letters with reasons; a good one still records."""
    settings = mqtt_settings(settings, broker)
    ingest = start_ingest(settings, tmp_path / "mqtt.log")
    bad: list[bytes | str] = [
        b"", b"not json", b"\xff\xfe\x00binary", b"[1, 2]", b"42", b'"text"',
        b'{"frames_before": "ten"}', b'{"frames_before": 0}', b'{"unknown": 1}',
        b'{"camera_id": "another-lane"}', b'{"transaction_id": "../etc/passwd"}',
        b'{"event_time": "yesterday"}', b'{"metadata": []}', b'{"frames_after": -1}',
        b'{"frames_before": 1000}', b'{"transaction_id": 5}', b"{" * 50,
        b'{"metadata": {"blob": "' + b"x" * 70_000 + b'"}}', b"null",
        b'{"camera_id": null, "frames_before": null, "transaction_id": "' + b"y" * 200 + b'"}',
    ]  # fmt: skip
    assert len(bad) == 20
    try:
        for payload in bad:
            peer.publish(settings.camera_id, payload)
        letters = peer.wait_for("sco/deadletter", 20)
        assert all(letter["reason"] for letter in letters)
        assert {str(letter["topic"]) for letter in letters} == {f"sco/{settings.camera_id}/events"}
        peer.publish(settings.camera_id, json.dumps({"transaction_id": "T-after-bad"}))
        queued = peer.wait_for("/recordings/", 1)
        assert queued[0]["status"] == "queued"
        assert ingest.running
    finally:
        ingest.stop()
    assert len(peer.on("sco/deadletter")) == 20


def test_the_same_transaction_twice_makes_one_recording(
    settings: Settings,
    broker: Broker,
    peer: Peer,
    tmp_path: Path,
    api_factory: Callable[[Settings], httpx.Client],
) -> None:
    """A repeated transaction ID over MQTT (or over MQTT then HTTP) is one recording."""
    settings = mqtt_settings(settings, broker)
    client = api_factory(settings)
    ingest = start_ingest(settings, tmp_path / "mqtt.log")
    try:
        for _ in range(2):
            peer.publish(settings.camera_id, json.dumps({"transaction_id": "T-twice"}))
        replies = peer.wait_for("/recordings/", 2)
    finally:
        ingest.stop()
    over_http = client.post("/v1/events", json={"transaction_id": "T-twice"}).json()
    assert replies[0]["recording_id"] == replies[1]["recording_id"] == over_http["recording_id"]
    listed = client.get("/v1/recordings", params={"camera_id": settings.camera_id}).json()
    assert len(listed) == 1


def test_the_service_reconnects_after_a_broker_restart(
    settings: Settings, broker: Broker, tmp_path: Path
) -> None:
    """The broker goes away and comes back: the next event is accepted without a restart."""
    settings = mqtt_settings(settings, broker)
    ingest = start_ingest(settings, tmp_path / "mqtt.log")
    try:
        broker.stop()
        ingest.wait_for_log("MQTT disconnected")
        broker.start()
        deadline = time.monotonic() + TIMEOUT
        while ingest.log().count("MQTT connected") < 2:
            assert time.monotonic() < deadline, ingest.log()
            time.sleep(0.1)
        peer = Peer(broker)
        try:
            peer.publish(settings.camera_id, json.dumps({"transaction_id": "T-reconnect"}))
            assert peer.wait_for("/recordings/", 1)[0]["status"] == "queued"
        finally:
            peer.close()
    finally:
        ingest.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_events_published_while_the_service_is_down_are_recorded_when_it_returns(
    settings: Settings,
    broker: Broker,
    peer: Peer,
    tmp_path: Path,
    api_factory: Callable[[Settings], httpx.Client],
    protocol: str,
) -> None:
    """The persistent session keeps QoS 1 events for us while we restart; none is lost."""
    settings = mqtt_settings(settings, broker, protocol)
    client = api_factory(settings)
    start_ingest(settings, tmp_path / "first.log").stop()
    for number in range(5):
        peer.publish(settings.camera_id, json.dumps({"transaction_id": f"T-offline-{number}"}))
    ingest = start_ingest(settings, tmp_path / "second.log")
    try:
        queued = peer.wait_for("/recordings/", 5)
    finally:
        ingest.stop()
    assert len({reply["recording_id"] for reply in queued}) == 5
    for reply in queued:
        assert wait_final(client, str(reply["recording_id"]))["status"] in {"failed", "complete"}


def test_poisonous_messages_are_dead_lettered_and_the_ingest_lives_on(
    settings: Settings, broker: Broker, peer: Peer, tmp_path: Path
) -> None:
    """Deep nesting (a recursion bomb of 2 KB) and lone surrogates are dead letters, not a
    dead ingest thread: the next good event is still recorded and the ingest stays healthy."""
    settings = mqtt_settings(settings, broker)
    ingest = start_ingest(settings, tmp_path / "mqtt.log")
    poison = [
        b'{"metadata": ' + b'{"a": ' * 340 + b"1" + b"}" * 341,
        b'{"metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"metadata": {"note": "\\ud800"}}',
    ]
    try:
        for payload in poison:
            peer.publish(settings.camera_id, payload)
        letters = peer.wait_for("sco/deadletter", len(poison))
        reasons = " / ".join(str(letter["reason"]) for letter in letters)
        assert "nested deeper than 16 levels" in reasons
        assert "nested too deeply" in reasons
        assert "lone surrogate" in reasons
        peer.publish(settings.camera_id, json.dumps({"transaction_id": "T-after-poison"}))
        assert peer.wait_for("/recordings/", 1)[0]["status"] == "queued"
        healthy = subprocess.run(
            [sys.executable, "-m", "services.cli", "check", "mqtt"],
            env=service_env(settings), capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert healthy.returncode == 0, healthy.stderr
    finally:
        ingest.stop()
    assert "Traceback" not in ingest.log()


def test_a_full_queue_is_waited_out_not_dead_lettered(
    settings: Settings, servers: Servers, broker: Broker, peer: Peer, tmp_path: Path
) -> None:
    """503 "queue full" means later, not never: the event waits and is recorded once a
    worker drains the queue; nothing goes to the dead-letter topic."""
    undrained = servers.broker.url.rsplit("/", 1)[0] + "/5"  # no worker consumes here yet
    redis.Redis.from_url(undrained).flushdb()
    settings = mqtt_settings(settings, broker).model_copy(
        update={"broker_url": undrained, "max_queued": 1}
    )
    ingest = start_ingest(settings, tmp_path / "mqtt.log")
    try:
        for number in range(2):
            peer.publish(settings.camera_id, json.dumps({"transaction_id": f"T-full-{number}"}))
        peer.wait_for("/recordings/", 1)
        wait_for_log = time.monotonic() + TIMEOUT
        while "too many queued recordings" not in ingest.log():
            assert time.monotonic() < wait_for_log, ingest.log()
            time.sleep(0.05)
        worker = start_worker(settings, tmp_path / "worker.log")
        try:
            replies = peer.wait_for("/recordings/", 4)  # two queued, two final
        finally:
            worker.stop()
    finally:
        ingest.stop()
    assert peer.on("sco/deadletter") == []
    assert len({reply["recording_id"] for reply in replies}) == 2
    assert {reply["status"] for reply in replies} >= {"queued"}
