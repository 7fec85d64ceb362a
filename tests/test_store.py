"""A store from one file, run the way an installer runs it: `sco-recorder up --config`,
three cameras in two lanes, and lane events recording every camera of a lane at one moment."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from services.runtime.redisserver import free_port
from tests.support.frames import assert_right_frames, load_manifest
from tests.support.observer import StreamObserver
from tests.support.videos import write_video
from tests.support.waiting import wait_until
from tests.test_cli import clean_env

pytestmark = pytest.mark.e2e

CAMERAS = {"lane-1-top": 8, "lane-1-bag": 10, "lane-2-top": 8}  # camera -> N
LANES = {"lane-1": ["lane-1-top", "lane-1-bag"], "lane-2": ["lane-2-top"]}


def store_file(tmp_path: Path, port: int) -> Path:
    lines = ["[defaults]", "frames = 8", f"port = {port}", "workers = 2", ""]
    for number, (camera, frames) in enumerate(CAMERAS.items()):
        video = write_video(tmp_path / f"{camera}.avi", frames=300 + 50 * number)
        lines += [f"[cameras.{camera}]", f'source = "{video}"']
        lines += [f"frames = {frames}", ""] if frames != 8 else [""]
    lines += ["[lanes]", *(f"{lane} = {json.dumps(cameras)}" for lane, cameras in LANES.items())]
    path = tmp_path / "store.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[httpx.Client, dict[str, StreamObserver]]]:
    """`up --config store.toml` on a free port, every camera's window full; and an observer
    of each camera's stream, the ground truth the recordings are checked against."""
    port = free_port()
    output = tmp_path / "recordings"
    env = clean_env()
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--config",
             str(store_file(tmp_path, port)), "--output", str(output)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    observers: dict[str, StreamObserver] = {}
    closing = ExitStack()
    try:
        wait_until(lambda: "Ctrl-C stops everything" in log.read_text() or up.poll() is not None,
                   60, "up ready")  # fmt: skip
        assert up.poll() is None, log.read_text()
        urls = json.loads((output / ".redis" / "urls.json").read_text())
        frames = closing.enter_context(redis.Redis.from_url(urls["redis_url"]))
        observers = {camera: StreamObserver(frames, camera).start() for camera in CAMERAS}
        client = closing.enter_context(
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        )

        def full() -> bool:
            cameras = {camera["camera_id"]: camera for camera in client.get("/v1/cameras").json()}
            return set(cameras) == set(CAMERAS) and all(
                cameras[camera]["buffer_length"] >= frames for camera, frames in CAMERAS.items()
            )

        wait_until(full, 30, "every camera's window buffered")
        yield client, observers
    finally:
        for observer in observers.values():
            observer.stop()
        closing.close()
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


def wait_event(client: httpx.Client, status_url: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event: dict[str, Any] = client.get(status_url).json()
        if event["status"] in {"complete", "partial", "failed"}:
            return event
        assert time.monotonic() < deadline, f"lane event stuck: {event}"
        time.sleep(0.1)


def test_a_lane_event_records_every_camera_of_its_lane_at_one_moment(
    store: tuple[httpx.Client, dict[str, StreamObserver]],
) -> None:
    client, observers = store
    body = {"lane_id": "lane-1", "transaction_id": "T-77", "metadata": {"register": 1}}
    answer = client.post("/v1/events", json=body)
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["status_url"] == f"/v1/events/{accepted['event_id']}"
    assert answer.headers["Location"] == accepted["status_url"]
    assert [recording["camera_id"] for recording in accepted["recordings"]] == LANES["lane-1"]

    again = client.post("/v1/events", json=body).json()  # the POS retries: the same event
    assert again["event_id"] == accepted["event_id"]
    assert [r["recording_id"] for r in again["recordings"]] == [
        r["recording_id"] for r in accepted["recordings"]
    ]

    event = wait_event(client, accepted["status_url"])
    assert event["status"] == "complete", event
    assert (event["lane_id"], event["transaction_id"]) == ("lane-1", "T-77")
    manifests = {recording["camera_id"]: load_manifest(recording)
                 for recording in event["recordings"]}  # fmt: skip
    assert set(manifests) == set(LANES["lane-1"])
    moments = {manifest["event_time"] for manifest in manifests.values()}
    assert len(moments) == 1, "one stamp for the whole lane"
    for camera, manifest in manifests.items():
        assert len(manifest["frames"]) == CAMERAS[camera]  # type: ignore[arg-type]
        assert (manifest["event_id"], manifest["lane_id"]) == (event["event_id"], "lane-1")
        assert manifest["metadata"] == {"register": 1}
        assert_right_frames(manifest, observers[camera])

    found = client.get("/v1/recordings", params={"transaction_id": "T-77"}).json()
    assert {recording["camera_id"] for recording in found} == set(LANES["lane-1"])


def test_lane_events_are_checked_like_any_event(
    store: tuple[httpx.Client, dict[str, StreamObserver]],
) -> None:
    client, observers = store
    single = client.post("/v1/events", json={"lane_id": "lane-2"}).json()
    assert [recording["camera_id"] for recording in single["recordings"]] == ["lane-2-top"]
    event = wait_event(client, single["status_url"])
    assert_right_frames(load_manifest(event["recordings"][0]), observers["lane-2-top"])

    unknown = client.post("/v1/events", json={"lane_id": "lane-9"})
    assert unknown.status_code == 422
    assert "unknown lane 'lane-9'; configured lanes: lane-1, lane-2" in unknown.text
    both = client.post("/v1/events", json={"lane_id": "lane-1", "camera_id": "lane-1-top"})
    assert both.status_code == 422
    assert "not both" in both.text
    too_many = client.post("/v1/events", json={"lane_id": "lane-1", "frames_before": 9})
    assert too_many.status_code == 422
    assert "lane-1-top" in too_many.text  # N is 8 there, 10 on the bagging camera
    camera = client.post("/v1/events", json={"camera_id": "lane-1-bag", "frames_before": 10})
    assert camera.status_code == 202  # a single camera of a store is still one event away
    assert client.get("/v1/events/" + "0" * 32).status_code == 404
