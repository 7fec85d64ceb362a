"""The compose stack on a real Docker engine: built here, a store of two lanes (three
cameras) from a store file, scaled to 3 workers, 20 lane events, a webhook receiver.

Run with `make test-docker` (root: it may install docker.io and debootstrap, and start
dockerd). No image registry is reachable here, so the Debian base image is built locally
with debootstrap and imported under the name the Dockerfiles use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.runtime.redisserver import free_port
from services.webhooks.delivery import verify
from tests.test_docker_files import ROOT, compose_binary

# On a machine with no images yet, debootstrap and the builds alone take many minutes: far
# beyond the suite's per-test limit, well inside CI's 90.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(45 * 60)]

BASE_IMAGE = "debian:bookworm-slim"
PROJECT = "sco-e2e"
FLOWER_AUTH = ("admin", "e2e-secret")
STORE = ROOT / "tests" / "docker" / "store.toml"
OVERRIDE = ROOT / "tests" / "docker" / "compose.e2e.yml"
WEBHOOK_SECRET = b"e2e-webhook-secret-0123456789"  # as in the store file
LANES = {"lane-1": ["lane-1-top", "lane-1-bag"], "lane-2": ["lane-2-top"]}
EVENTS_PER_LANE = 10
RECORDINGS = EVENTS_PER_LANE * sum(len(cameras) for cameras in LANES.values())
WORKERS = 3
LANE_1_PASSWORD = uuid.uuid4().hex  # lane-1's register's, on the compose broker
# One line per recording folder: "<camera>/<date>/<id>/ <files> <PNGs> ok-if-metadata.json".
API_KEY = "e2e-" + uuid.uuid4().hex
LIST_RECORDINGS = r"""
cd /r && for d in */*/*/; do
  pngs=$(ls "$d" | grep -c '^frame_.*\.png$')
  echo "$d $(ls "$d" | wc -l) $pngs $(test -s "$d/metadata.json" && echo ok)"
done
"""


def run(*command: str, timeout: float = 900, **kwargs: object) -> str:
    """Run a command, fail the test with its output if it fails."""
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )  # type: ignore[call-overload]  # kwargs are subprocess.run's own
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


def apt_install(*packages: str) -> None:
    """Install Debian packages without starting any service they bring."""
    run(str(ROOT / "scripts" / "apt-install"), *packages)


def engine_answers() -> bool:
    """True when a Docker engine answers."""
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    """A running Docker engine: the machine's, or dockerd started (and stopped) here."""
    if engine_answers():
        yield
        return
    if shutil.which("dockerd") is None:
        apt_install("docker.io")
    log = Path(tempfile.gettempdir()) / "sco-e2e-dockerd.log"
    with log.open("wb") as output:
        daemon = subprocess.Popen(["dockerd"], stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not engine_answers():
            assert daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "dockerd did not start"
            time.sleep(0.5)
        yield
        daemon.terminate()
        daemon.wait(timeout=60)


@pytest.fixture(scope="module")
def base_image(engine: None) -> str:
    """Debian bookworm minbase, built with debootstrap once and kept by the engine."""
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True,
                      check=False).returncode == 0:  # fmt: skip
        return BASE_IMAGE
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    with tempfile.TemporaryDirectory(prefix="sco-rootfs-") as work:
        rootfs = Path(work) / "rootfs"
        run("debootstrap", "--variant=minbase", "bookworm", str(rootfs),
            "http://deb.debian.org/debian")  # fmt: skip
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
            run("docker", "import", "-", BASE_IMAGE, stdin=tar.stdout)
        assert tar.returncode == 0
    return BASE_IMAGE


def compose(*args: str, env: dict[str, str], timeout: float = 900) -> str:
    """Compose v2 on the project's file, as the e2e project."""
    return run(str(compose_binary()), "-f", str(ROOT / "docker-compose.yml"), "-f",
               str(OVERRIDE), "-p", PROJECT, *args, env=env, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def stack(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Images built, the store's stack up with 3 workers and healthy; torn down (volumes
    too) after. Settings reach the containers through the env file, as `init` writes it."""
    port = free_port()
    settings = {
        "SCO_API_KEY": API_KEY,  # the API listens on 0.0.0.0 in its container: never open
        "SCO_PUBLIC_URL": f"http://127.0.0.1:{port}",
        # What `sco-recorder init` writes into .env: both Redis servers want a password.
        "FRAMES_REDIS_PASSWORD": uuid.uuid4().hex,
        "BROKER_REDIS_PASSWORD": uuid.uuid4().hex,
        "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
        "MQTT_INGEST_PASSWORD": uuid.uuid4().hex,
        "MQTT_LANE_PASSWORDS": f"lane-1={LANE_1_PASSWORD}",
    }
    env_file = tmp_path_factory.mktemp("compose") / "sco.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    env = {
        **os.environ,
        **settings,
        "BASE_IMAGE": base_image,
        "SCO_ENV_FILE": str(env_file),
        "SCO_STORE": str(STORE),
        "SCO_PORT": str(port),
        "FLOWER_PORT": str(free_port()),
        "RECEIVER_PORT": str(free_port()),
        "MQTT_PORT": str(free_port()),  # this machine's own mosquitto has 1883
        "MQTTS_PORT": str(free_port()),
        "CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    }
    started = time.monotonic()
    compose("build", env=env)
    built = time.monotonic()
    try:
        compose("--profile", "mqtt", "up", "-d", "--scale", f"worker={WORKERS}", "--wait",
                "--wait-timeout", "240", env=env)  # fmt: skip
        print(f"\nbuild {built - started:.0f} s, up {time.monotonic() - built:.0f} s")
        yield env
    finally:
        logs = subprocess.run(
            [str(compose_binary()), "-f", str(ROOT / "docker-compose.yml"), "-f",
             str(OVERRIDE), "-p", PROJECT, "logs", "--no-color", "--tail", "50"],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        print(logs.stdout[-5000:])
        compose("--profile", "mqtt", "down", "-v", "--remove-orphans", env=env)


def wait_buffered(api: httpx.Client) -> None:
    """Every camera of the store running with a full window."""
    deadline = time.monotonic() + 120
    while not (
        api.get("/readyz").status_code == 200
        and all(camera["buffer_length"] >= 30 for camera in api.get("/v1/cameras").json())
    ):
        assert time.monotonic() < deadline, api.get("/v1/cameras").json()
        time.sleep(0.5)


def send_and_wait(api: httpx.Client) -> list[dict[str, object]]:
    """Send the lane events, wait until every one is complete; the events."""
    accepted = []
    for number in range(EVENTS_PER_LANE):
        for lane in LANES:
            body = {"lane_id": lane, "transaction_id": f"E2E-{lane}-{number}"}
            answer = api.post("/v1/events", json=body)
            assert answer.status_code == 202, answer.text
            accepted.append(answer.json())
    deadline = time.monotonic() + 300
    events = []
    for event in accepted:
        while (current := api.get(str(event["status_url"])).json())["status"] in {
            "queued", "running"
        }:  # fmt: skip
            assert time.monotonic() < deadline, current
            time.sleep(0.2)
        assert current["status"] == "complete", current
        events.append(current)
    return events


def test_a_store_file_runs_two_lanes_with_exact_recordings_and_webhooks(
    stack: dict[str, str],
) -> None:
    """Lane events → one complete recording per camera of the lane, at one moment, on the
    volume; jobs on all 3 workers; one signed webhook per recording; Flower guarded."""
    base = f"http://127.0.0.1:{stack['SCO_PORT']}"
    assert httpx.get(f"{base}/v1/cameras", timeout=30).status_code == 401
    with httpx.Client(
        base_url=base, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as api:
        wait_buffered(api)
        events = send_and_wait(api)
        recordings = [recording for event in events for recording in event["recordings"]]  # type: ignore[attr-defined]
        assert len(recordings) == RECORDINGS
        for event in events:
            cameras = [recording["camera_id"] for recording in event["recordings"]]  # type: ignore[attr-defined]
            assert cameras == LANES[str(event["lane_id"])]
            moments = {recording["event_time"] for recording in event["recordings"]}  # type: ignore[attr-defined]
            assert len(moments) == 1, event
        # The API reads the recordings volume (read-only) to serve frames and zips.
        first = recordings[0]["recording_id"]
        frame = api.get(f"/v1/recordings/{first}/frames/30")
        assert frame.status_code == 200, frame.text
        assert frame.content.startswith(b"\x89PNG")
        assert api.get(f"/v1/recordings/{first}/download").status_code == 200

    ids = {str(recording["recording_id"]) for recording in recordings}
    volume = f"{PROJECT}_recordings:/r:ro"
    listing = run("docker", "run", "--rm", "-v", volume, BASE_IMAGE, "sh", "-c", LIST_RECORDINGS)
    folders = listing.split("\n")[:-1]
    assert len(folders) == RECORDINGS
    assert {line.split(" ", 1)[1] for line in folders} == {"32 30 ok"}  # + metadata, thumbnail
    assert {line.split("/")[2] for line in folders} == ids

    receiver = f"http://127.0.0.1:{stack['RECEIVER_PORT']}"
    deadline = time.monotonic() + 60
    while len(deliveries := httpx.get(receiver, timeout=30).json()) < RECORDINGS:
        assert time.monotonic() < deadline, f"{len(deliveries)} webhook deliveries"
        time.sleep(0.5)
    bodies = []
    for delivery in deliveries:
        assert verify(WEBHOOK_SECRET, delivery["body"].encode(), delivery["signature"])
        bodies.append(json.loads(delivery["body"]))
    assert sorted(body["recording_id"] for body in bodies) == sorted(ids)
    assert {body["status"] for body in bodies} == {"complete"}
    assert bodies[0]["links"]["download"].startswith(f"{base}/v1/recordings/")

    flower = f"http://127.0.0.1:{stack['FLOWER_PORT']}"
    assert httpx.get(f"{flower}/api/workers", timeout=30).status_code == 401
    tasks = httpx.get(f"{flower}/api/tasks", params={"limit": 5000}, auth=FLOWER_AUTH, timeout=30)
    assert tasks.status_code == 200
    recorded = [task for task in tasks.json().values() if task["name"] == "sco.record"]
    per_worker = Counter(task["worker"] for task in recorded)
    assert sum(per_worker.values()) == RECORDINGS, per_worker
    assert len(per_worker) == WORKERS, per_worker


def publish(env: dict[str, str], topic: str, body: str, *credentials: str) -> str:
    """mosquitto_pub inside the broker's container, as a client on the store network would;
    its output (a refusal included)."""
    command = [str(compose_binary()), "-f", str(ROOT / "docker-compose.yml"), "-f",
               str(OVERRIDE), "-p", PROJECT, "--profile", "mqtt", "exec", "-T", "mosquitto",
               "mosquitto_pub", "-h", "127.0.0.1", "-V", "5", "-q", "1", "-t", topic, "-m", body,
               *credentials]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60,
                            check=False)  # fmt: skip
    return f"{result.returncode} {result.stdout} {result.stderr}"


def test_the_compose_broker_refuses_strangers_and_keeps_each_lane_to_its_topic(
    stack: dict[str, str],
) -> None:
    """No anonymous client; lane-1's register records on its own lane, never on lane-2's."""
    refused = publish(stack, "sco/lanes/lane-1/events", '{"transaction_id": "MQTT-ANON"}')
    assert "not authori" in refused.lower(), refused
    lane_1 = ("-u", "lane-1", "-P", LANE_1_PASSWORD)
    publish(stack, "sco/lanes/lane-2/events", '{"transaction_id": "MQTT-WRONG"}', *lane_1)
    publish(stack, "sco/lanes/lane-1/events", '{"transaction_id": "MQTT-RIGHT"}', *lane_1)
    base = f"http://127.0.0.1:{stack['SCO_PORT']}"
    with httpx.Client(
        base_url=base, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as api:
        deadline = time.monotonic() + 60
        while len(found := api.get("/v1/recordings?transaction_id=MQTT-RIGHT").json()) < 2:
            assert time.monotonic() < deadline, found
            time.sleep(0.5)
        assert {recording["camera_id"] for recording in found} == set(LANES["lane-1"])
        time.sleep(2)  # the refused ones had as long
        for transaction in ("MQTT-WRONG", "MQTT-ANON"):
            assert api.get(f"/v1/recordings?transaction_id={transaction}").json() == []


def test_the_all_in_one_image_prints_a_key_and_records_with_it(base_image: str) -> None:
    """The README's first try: `docker build -t sco-recorder-service .` then `docker run -p
    8000:8000 sco-recorder-service`. Its API listens on every interface, so it makes a key
    and prints it with an address to paste; an event posted with that key records."""
    image, name = "sco-recorder-service:e2e", f"sco-e2e-one-{uuid.uuid4().hex[:8]}"
    # The legacy builder (what Debian's docker.io has without buildx); this machine's proxy
    # wants its CA bundle, dropped where the Dockerfile looks for one.
    bundle = ROOT / "docker" / "ca-bundle.crt"
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", bundle)
    try:
        run("docker", "build", "-t", image, "--build-arg", f"BASE_IMAGE={base_image}",
            str(ROOT), env={**os.environ, "DOCKER_BUILDKIT": "0"})  # fmt: skip
    finally:
        bundle.unlink()
    port = free_port()
    run("docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", image)
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops everything" not in (logs := run("docker", "logs", name)):
            assert time.monotonic() < deadline, logs
            time.sleep(1)
        pasteable = r"http://127\.0\.0\.1:8000/v1/events -H 'Authorization: Bearer (\S+)'"
        printed = re.search(pasteable, logs)
        assert printed is not None, logs
        assert "http://0.0.0.0" not in logs
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/v1/events", json={}, timeout=30).status_code == 401
        with httpx.Client(
            base_url=base, timeout=30, headers={"Authorization": f"Bearer {printed.group(1)}"}
        ) as api:
            deadline = time.monotonic() + 120
            while not _buffer_full(api):
                assert time.monotonic() < deadline, run("docker", "logs", name)
                time.sleep(1)
            recording_id = api.post("/v1/events", json={}).json()["recording_id"]
            while (recording := api.get(f"/v1/recordings/{recording_id}").json())["status"] in {
                "queued", "running"
            }:  # fmt: skip
                assert time.monotonic() < deadline, recording
                time.sleep(0.5)
            assert recording["status"] == "complete", recording
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def _buffer_full(api: httpx.Client, frames: int = 30) -> bool:
    """Ready, with N frames buffered: just after start a window would still be short."""
    if api.get("/readyz").status_code != 200:
        return False
    return int(api.get("/v1/cameras").json()[0]["buffer_length"]) >= frames
