"""The compose broker's own configuration (docker/mosquitto: its entrypoint, config and ACL),
run here with Debian's mosquitto on free ports: nobody anonymous, a lane's publisher only on
its own lane, and the ingest's TLS and password settings working against its TLS listener."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from services.kernel.settings import Settings
from services.runtime.redisserver import free_port
from tests.mqtt.test_mqtt import mosquitto_binary, start_ingest
from tests.support.certs import make_certs
from tests.support.frames import assert_right_frames, load_manifest
from tests.support.observer import StreamObserver
from tests.support.processes import Service
from tests.support.waiting import wait_final

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("session_worker")]

ROOT = Path(__file__).parent.parent.parent
BROKER_FILES = ROOT / "docker" / "mosquitto"
INGEST_PASSWORD = "ingest-" + os.urandom(8).hex()
LANE_PASSWORDS = {"lane-a": "pw-a-" + os.urandom(4).hex(), "lane-b": "pw-b-" + os.urandom(4).hex()}


@dataclass
class SecureBroker:
    """The compose broker's entrypoint and files, on free ports of this machine."""

    port: int
    tls_port: int
    ca_file: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    port, tls_port = free_port(), free_port()
    data = tmp_path / "data"
    data.mkdir()
    conf = (BROKER_FILES / "mosquitto.conf").read_text()
    conf = conf.replace("/etc/mosquitto/sco.acl", str(BROKER_FILES / "sco.acl"))
    conf = conf.replace("/mosquitto/data/", f"{data}/")
    conf = conf.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    if os.geteuid() == 0:  # mosquitto would drop to its own user; the container runs as 10001
        conf += "user root\n"
    (tmp_path / "sco.conf").write_text(conf)
    ca_file = make_certs(tmp_path / "certs")
    env = {
        "PATH": f"/usr/bin:/bin:{os.environ.get('PATH', '')}",
        "MQTT_INGEST_PASSWORD": INGEST_PASSWORD,
        "MQTT_LANE_PASSWORDS": ",".join(f"{lane}={pw}" for lane, pw in LANE_PASSWORDS.items()),
        "MOSQUITTO_CONF": str(tmp_path / "sco.conf"),
        "MOSQUITTO_RUN_DIR": str(tmp_path / "run"),
        "MOSQUITTO_CERTS_DIR": str(tmp_path / "certs"),
        "MOSQUITTO_TLS_PORT": str(tls_port),
        "MOSQUITTO_TLS_BIND": "127.0.0.1",
        "MOSQUITTO": mosquitto_binary(),
    }
    with (tmp_path / "mosquitto.log").open("wb") as log:
        process = subprocess.Popen(  # the project's own entrypoint
            ["/bin/sh", str(BROKER_FILES / "entrypoint.sh")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    for listening in (port, tls_port):
        while True:
            try:
                socket.create_connection(("127.0.0.1", listening), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "mosquitto.log").read_text()
                assert time.monotonic() < deadline, "the broker did not start"
                time.sleep(0.05)
    yield SecureBroker(port, tls_port, ca_file, process)
    process.terminate()
    process.wait(timeout=10)


def connect(
    broker: SecureBroker, user: str | None, password: str | None, *, tls: bool = False
) -> tuple[mqtt.Client, ReasonCode]:
    """A client connected (or refused): MQTT 5, its CONNACK's reason."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{os.urandom(4).hex()}",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    answered = threading.Event()
    reasons: list[ReasonCode] = []

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode,
                   props: object) -> None:  # fmt: skip
        reasons.append(reason)
        answered.set()

    client.on_connect = on_connect
    if user is not None:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set(ca_certs=str(broker.ca_file))
    client.connect("localhost" if tls else "127.0.0.1", broker.tls_port if tls else broker.port)
    client.loop_start()
    assert answered.wait(10), "no CONNACK"
    return client, reasons[0]


def test_nobody_anonymous_and_no_wrong_password(secure_broker: SecureBroker) -> None:
    anonymous, refused = connect(secure_broker, None, None)
    anonymous.loop_stop()
    assert refused.is_failure
    assert refused.getName() == "Not authorized"
    wrong, refused = connect(secure_broker, "sco-ingest", "not-the-password")
    wrong.loop_stop()
    assert refused.is_failure


def test_a_lane_publisher_writes_only_its_own_lane(secure_broker: SecureBroker) -> None:
    """What lane-a's register publishes on lane-b's topic never reaches the ingest."""
    ingest, accepted = connect(secure_broker, "sco-ingest", INGEST_PASSWORD)
    assert not accepted.is_failure
    seen: list[str] = []
    ingest.on_message = lambda client, userdata, message: seen.append(message.topic)
    ingest.subscribe([("sco/lanes/+/events", 1), ("sco/+/events", 1)])
    time.sleep(0.5)
    lane_a, accepted = connect(secure_broker, "lane-a", LANE_PASSWORDS["lane-a"])
    assert not accepted.is_failure
    for topic in ("sco/lanes/lane-b/events", "sco/cam-1/events", "sco/lanes/lane-a/events"):
        lane_a.publish(topic, "{}", qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # time for a wrongly allowed message to arrive too
    for client in (ingest, lane_a):
        client.loop_stop()
        client.disconnect()
    assert seen == ["sco/lanes/lane-a/events"]


def test_the_ingest_records_a_lane_event_over_tls_with_its_password(
    settings: Settings,
    secure_broker: SecureBroker,
    tmp_path: Path,
    capture_factory: Callable[[Settings], Service],
    observer_factory: Callable[[str], StreamObserver],
    api_factory: Callable[[Settings], httpx.Client],
) -> None:
    """SCO_MQTT_URL=mqtts://…:8883, SCO_MQTT_CA_FILE, SCO_MQTT_USERNAME/PASSWORD, as the README
    says; lane-a's register publishes over TLS too and reads the reply to its event."""
    settings = settings.model_copy(
        update={
            "mqtt_url": f"mqtts://localhost:{secure_broker.tls_port}",
            "mqtt_ca_file": secure_broker.ca_file,
            "mqtt_username": "sco-ingest",
            "mqtt_password": SecretStr(INGEST_PASSWORD),
            "mqtt_client_id": f"ingest-{settings.camera_id}",
            "lanes": {"lane-a": [settings.camera_id]},
        }
    )
    observer = observer_factory(settings.camera_id)
    capture_factory(settings)
    ingest = start_ingest(settings, tmp_path / "mqtt.log")
    register, accepted = connect(secure_broker, "lane-a", LANE_PASSWORDS["lane-a"], tls=True)
    assert not accepted.is_failure
    replies: list[dict[str, Any]] = []
    register.on_message = lambda client, userdata, message: replies.append(
        json.loads(message.payload)
    )
    register.subscribe("sco/lanes/lane-a/events/+", qos=1)
    try:
        observer.wait_for(30)
        body = json.dumps({"transaction_id": "T-tls"})
        register.publish("sco/lanes/lane-a/events", body, qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 30
        while not replies:
            assert time.monotonic() < deadline, ingest.log()
            time.sleep(0.05)
    finally:
        register.loop_stop()
        register.disconnect()
        ingest.stop()
    (reply,) = replies
    assert reply["lane_id"] == "lane-a"
    (recording,) = reply["recordings"]
    assert recording["camera_id"] == settings.camera_id
    final = wait_final(api_factory(settings), str(recording["recording_id"]))
    assert final["status"] == "complete", final
    assert_right_frames(load_manifest(final), observer)
