"""End to end: a real capture process, the API over HTTP, and real Celery workers."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import redis

from services.kernel import keys
from services.kernel.framecodec import I420
from services.kernel.settings import Settings
from tests.support.frames import assert_right_frames, load_manifest
from tests.support.observer import StreamObserver
from tests.support.processes import Service, start_worker
from tests.support.servers import Servers, base_settings
from tests.support.videos import write_h264
from tests.support.waiting import wait_final

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("session_worker")]

ApiFactory = Callable[[Settings], httpx.Client]
CaptureFactory = Callable[[Settings], Service]
ObserverFactory = Callable[[str], StreamObserver]


def start_lane(
    settings: Settings,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    observer_factory: ObserverFactory,
    warm_frames: int = 30,
) -> tuple[httpx.Client, StreamObserver]:
    """Capture running, the stream rolled over a few times, the API answering."""
    observer = observer_factory(settings.camera_id)
    capture_factory(settings)
    client = api_factory(settings)
    observer.wait_for(warm_frames)
    return client, observer


def test_saved_frames_are_the_n_just_before_the_event(
    settings: Settings,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    observer_factory: ObserverFactory,
) -> None:
    """An event yields exactly the N frames captured at or before its receipt, in order."""
    client, observer = start_lane(settings, api_factory, capture_factory, observer_factory)
    answer = client.post(
        "/v1/events", json={"transaction_id": "T-1001", "metadata": {"sku": "4006381333931"}}
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "queued"
    assert body["status_url"] == f"/v1/recordings/{body['recording_id']}"
    recording = wait_final(client, body["recording_id"])
    assert recording["status"] == "complete", recording
    assert recording["frames_saved"] == recording["frames_requested"] == settings.frames
    manifest = load_manifest(recording)
    assert manifest["metadata"] == {"sku": "4006381333931"}
    assert manifest["transaction_id"] == "T-1001"
    assert_right_frames(manifest, observer)


def test_frames_held_as_the_decoders_yuv_are_the_right_ones_in_the_png(
    settings: Settings,
    tmp_path: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    observer_factory: ObserverFactory,
) -> None:
    """SCO_FRAME_FORMAT=yuv on an H.264 file: the stream holds the decoder's I420 planes, half
    of BGR's bytes, and the recording is still exactly the N frames before the event, each
    PNG the planes' picture with its frame's index."""
    video = write_h264(tmp_path / "lane.mp4", frames=500)
    settings = settings.model_copy(update={"source": str(video), "frame_format": "yuv"})
    client, observer = start_lane(settings, api_factory, capture_factory, observer_factory)
    answer = client.post("/v1/events", json={"transaction_id": "T-YUV"})
    assert answer.status_code == 202, answer.text
    recording = wait_final(client, answer.json()["recording_id"])
    assert recording["status"] == "complete", recording
    assert {frame.pixel_format for frame in observer.frames} == {I420}
    assert {frame.pixels.nbytes for frame in observer.frames} == {320 * 240 * 3 // 2}
    (camera,) = client.get("/v1/cameras").json()
    assert (camera["width"], camera["height"]) == (320, 240)
    assert_right_frames(load_manifest(recording), observer)


def test_frames_survive_a_worker_that_starts_five_seconds_late(
    servers: Servers,
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    observer_factory: ObserverFactory,
) -> None:
    """The pin keeps the window, and only it, while no worker runs; then the stream is N again."""
    late_broker = servers.broker.url.rsplit("/", 1)[0] + "/1"
    settings = base_settings(
        servers, tmp_path / "out", source=str(video), broker_url=late_broker, workers=1
    )
    client, observer = start_lane(settings, api_factory, capture_factory, observer_factory)
    answer = client.post("/v1/events", json={"transaction_id": "T-late"})
    assert answer.status_code == 202, answer.text
    time.sleep(5)
    frames_store = redis.Redis.from_url(servers.frames.url)
    # 125 frames were captured meanwhile: the stream holds the pinned window and the N newest.
    held = frames_store.xlen(keys.frame_stream(settings.camera_id))
    assert settings.frames < held <= 2 * settings.frames + 1, held
    worker = start_worker(settings, tmp_path / "late-worker.log")
    try:
        recording = wait_final(client, answer.json()["recording_id"])
    finally:
        worker.stop()
    assert recording["status"] == "complete", recording
    assert_right_frames(load_manifest(recording), observer)
    deadline = time.monotonic() + 5
    while frames_store.xlen(keys.frame_stream(settings.camera_id)) > settings.frames + 1:
        assert time.monotonic() < deadline, "stream did not shrink back to N"
        time.sleep(0.05)


def test_trusted_event_time_picks_the_frames_before_that_moment(
    servers: Servers,
    recordings_root: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    observer_factory: ObserverFactory,
) -> None:
    """With trust_event_time, the window ends at the cashier's moment, not at receipt."""
    settings = base_settings(servers, recordings_root, source=str(video), trust_event_time=True)
    client, observer = start_lane(settings, api_factory, capture_factory, observer_factory)
    moment = datetime.now(tz=timezone.utc) - timedelta(milliseconds=500)
    answer = client.post("/v1/events", json={"event_time": moment.isoformat()})
    assert answer.status_code == 202, answer.text
    recording = wait_final(client, answer.json()["recording_id"])
    assert recording["status"] == "complete", recording
    manifest = load_manifest(recording)
    assert manifest["event_time_source"] == "cashier"
    assert datetime.fromisoformat(str(manifest["event_time"])) == moment
    assert_right_frames(manifest, observer)


def test_a_recording_is_never_half_visible(
    settings: Settings,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    observer_factory: ObserverFactory,
) -> None:
    """A watcher scanning the tree never sees a recording folder without all its files."""
    client, _ = start_lane(settings, api_factory, capture_factory, observer_factory)
    camera_root = settings.output_dir / settings.camera_id
    seen_incomplete: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for day in camera_root.glob("*"):
                for folder in day.iterdir():
                    names = set(os.listdir(folder))
                    pngs = {name for name in names if name.endswith(".png")}
                    if "metadata.json" not in names or len(pngs) != settings.frames:
                        seen_incomplete.append(f"{folder}: {sorted(names)}")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ids = [client.post("/v1/events", json={}).json()["recording_id"] for _ in range(5)]
    statuses = [wait_final(client, recording_id)["status"] for recording_id in ids]
    stop.set()
    watcher.join()
    assert statuses == ["complete"] * 5
    assert seen_incomplete == []
    assert len(list(camera_root.glob("*/*"))) == 5


def test_a_duplicate_event_makes_one_recording(
    settings: Settings,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
    observer_factory: ObserverFactory,
) -> None:
    """The same transaction (or Idempotency-Key) twice: one recording, the same answer."""
    client, _ = start_lane(settings, api_factory, capture_factory, observer_factory)
    first = client.post("/v1/events", json={"transaction_id": "T-dup"})
    second = client.post("/v1/events", json={"transaction_id": "T-dup"})
    keyed = [
        client.post("/v1/events", json={}, headers={"Idempotency-Key": "K-1"}) for _ in range(2)
    ]
    assert first.status_code == second.status_code == 202
    assert first.json()["recording_id"] == second.json()["recording_id"]
    assert keyed[0].json()["recording_id"] == keyed[1].json()["recording_id"]
    for answer in (first, keyed[0]):
        assert wait_final(client, answer.json()["recording_id"])["status"] == "complete"
    listed = client.get("/v1/recordings", params={"camera_id": settings.camera_id}).json()
    assert len(listed) == 2
    assert len(list((settings.output_dir / settings.camera_id).glob("*/*"))) == 2
