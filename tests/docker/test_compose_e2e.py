"""The compose stack on a real Docker engine: built here, scaled to 3 workers, 30 events.

Run with `make test-docker` (root: it may install docker.io and debootstrap, and start
dockerd). No image registry is reachable here, so the Debian base image is built locally
with debootstrap and imported under the name the Dockerfiles use.
"""

from __future__ import annotations

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
from tests.test_docker_files import ROOT, compose_binary

# On a machine with no images yet, debootstrap and the builds alone take many minutes: far
# beyond the suite's per-test limit, well inside CI's 90.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(45 * 60)]

BASE_IMAGE = "debian:bookworm-slim"
PROJECT = "sco-e2e"
FLOWER_AUTH = ("admin", "e2e-secret")
EVENTS = 30
WORKERS = 3
# One line per recording folder: "<date>/<id>/ <files> <PNGs> ok-if-metadata.json-is-there".
API_KEY = "e2e-" + uuid.uuid4().hex
LIST_RECORDINGS = r"""
cd /r/lane-1 && for d in */*/; do
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
    run("apt-get", "update", "-q")
    policy = Path("/usr/sbin/policy-rc.d")
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        run("apt-get", "install", "-y", "-q", "--no-install-recommends", *packages,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
    finally:
        policy.unlink()


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
    return run(str(compose_binary()), "-f", str(ROOT / "docker-compose.yml"), "-p", PROJECT,
               *args, env=env, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def stack(base_image: str) -> Iterator[dict[str, str]]:
    """Images built, the stack up with 3 workers and healthy; torn down (volumes too) after."""
    env = {
        **os.environ,
        "BASE_IMAGE": base_image,
        "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
        "SCO_PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
        "SCO_SOURCE": "sample",
        "CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
        "SCO_API_KEY": API_KEY,  # the API listens on 0.0.0.0 in its container: never open
        # What `sco-recorder init` writes into .env: both Redis servers want a password.
        "FRAMES_REDIS_PASSWORD": uuid.uuid4().hex,
        "BROKER_REDIS_PASSWORD": uuid.uuid4().hex,
    }
    started = time.monotonic()
    compose("build", env=env)
    built = time.monotonic()
    try:
        compose("up", "-d", "--scale", f"worker={WORKERS}", "--wait", "--wait-timeout", "240",
                env=env)  # fmt: skip
        print(f"\nbuild {built - started:.0f} s, up {time.monotonic() - built:.0f} s")
        yield env
    finally:
        logs = subprocess.run(
            [str(compose_binary()), "-f", str(ROOT / "docker-compose.yml"), "-p", PROJECT,
             "logs", "--no-color", "--tail", "50"],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        print(logs.stdout[-5000:])
        compose("down", "-v", "--remove-orphans", env=env)


def send_and_wait(api: httpx.Client) -> list[str]:
    """Send the events, wait until every recording is complete; their IDs."""
    ids = []
    for number in range(EVENTS):
        answer = api.post("/v1/events", json={"transaction_id": f"E2E-{number}"})
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["recording_id"])
    deadline = time.monotonic() + 300
    for recording_id in ids:
        while (recording := api.get(f"/v1/recordings/{recording_id}").json())["status"] in {
            "queued", "running"
        }:  # fmt: skip
            assert time.monotonic() < deadline, recording
            time.sleep(0.2)
        assert recording["status"] == "complete", recording
    return ids


def test_thirty_events_make_thirty_recordings_spread_over_three_workers(
    stack: dict[str, str],
) -> None:
    """30 events → 30 complete recordings on the volume, jobs on all 3 workers, Flower guarded."""
    base = f"http://127.0.0.1:{stack['SCO_PORT']}"
    assert httpx.get(f"{base}/v1/cameras", timeout=30).status_code == 401
    with httpx.Client(
        base_url=base, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as api:
        ids = send_and_wait(api)
        # The API reads the recordings volume (read-only) to serve frames and zips.
        frame = api.get(f"/v1/recordings/{ids[0]}/frames/30")
        assert frame.status_code == 200, frame.text
        assert frame.content.startswith(b"\x89PNG")
        assert api.get(f"/v1/recordings/{ids[0]}/download").status_code == 200

    volume = f"{PROJECT}_recordings:/r:ro"
    listing = run("docker", "run", "--rm", "-v", volume, BASE_IMAGE, "sh", "-c", LIST_RECORDINGS)
    folders = listing.split("\n")[:-1]
    assert len(folders) == EVENTS
    assert {line.split(" ", 1)[1] for line in folders} == {"32 30 ok"}  # + metadata, thumbnail
    assert {line.split("/")[1] for line in folders} == set(ids)

    flower = f"http://127.0.0.1:{stack['FLOWER_PORT']}"
    assert httpx.get(f"{flower}/api/workers", timeout=30).status_code == 401
    tasks = httpx.get(f"{flower}/api/tasks", params={"limit": 1000}, auth=FLOWER_AUTH, timeout=30)
    assert tasks.status_code == 200
    per_worker = Counter(task["worker"] for task in tasks.json().values())
    assert sum(per_worker.values()) == EVENTS, per_worker
    assert len(per_worker) == WORKERS, per_worker


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
