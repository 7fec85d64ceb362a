"""The capture loop against a real Redis: paced frames, a capped stream, a heartbeat."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import redis

from services.capture.service import Capture
from services.capture.source import FrameSource, open_source
from services.capture.spec import SourceError, SourceSpec, parse_source
from services.kernel.framecodec import UNSPECIFIED, Colour, PixelFormat, Pixels
from services.kernel.settings import Settings
from services.stores.cameras import CameraRegistry
from services.stores.framebuffer import FrameBuffer
from tests.support.servers import Servers, base_settings
from tests.support.videos import write_video


@pytest.fixture
def client(servers: Servers) -> Iterator[redis.Redis]:
    """A client on the frame store."""
    connection = redis.Redis.from_url(servers.frames.url)
    yield connection
    connection.close()


def run_capture(capture: Capture, seconds: float) -> None:
    """Run a capture in a thread for a while, then stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=capture.run, args=(stop,))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_file_is_captured_at_its_native_rate_into_n_frames(
    servers: Servers, client: redis.Redis, tmp_path: Path
) -> None:
    """A 25 fps file gives about 25 frames a second; the stream holds N; the heartbeat says so."""
    settings = base_settings(servers, tmp_path, frames=8)
    video = write_video(tmp_path / "v.avi", frames=100)
    buffer = FrameBuffer(client, settings.camera_id)
    capture = Capture(
        settings, spec=parse_source(str(video)), buffer=buffer,
        registry=CameraRegistry(client),
        opener=partial(open_source, frame_format=settings.frame_format),
    )  # fmt: skip
    run_capture(capture, 2.5)
    assert 50 <= capture.counters.frames_read <= 70
    assert buffer.length() == 8
    status = CameraRegistry(client).read(settings.camera_id)
    assert status is not None
    assert status.state == "stopped"
    assert (status.width, status.height) == (320, 240)
    assert status.frames_read == capture.counters.frames_read
    assert status.last_frame_at is not None


class FlakyCamera:
    """A fake camera: delivers a few frames, then fails; at its frame rate, or at once."""

    fps = 50.0
    pixel_format: PixelFormat = "bgr"
    colour: Colour = UNSPECIFIED

    def __init__(self, frames: int, *, paced: bool = True) -> None:
        self.left = frames
        self.paced = paced

    def read(self) -> tuple[Pixels, int] | None:
        """The next small frame, until the camera fails."""
        if self.left == 0:
            return None
        self.left -= 1
        if self.paced:
            time.sleep(1 / self.fps)
        return np.zeros((4, 4, 3), dtype=np.uint8), self.left

    def position(self) -> float | None:
        """A fake camera knows no stream position."""
        return None

    def close(self) -> None:
        """Nothing to release."""


def test_a_live_source_is_reopened_with_backoff(
    servers: Servers, client: redis.Redis, tmp_path: Path
) -> None:
    """A camera that fails, then refuses to open, is retried and frames flow again."""
    settings: Settings = base_settings(servers, tmp_path, frames=5)
    opened: list[float] = []

    def opener(spec: SourceSpec) -> FrameSource:
        opened.append(time.monotonic())
        if len(opened) == 2:
            raise SourceError("camera 0: cannot open it")
        return FlakyCamera(frames=10)

    capture = Capture(
        settings, spec=SourceSpec("camera", "0"), buffer=FrameBuffer(client, settings.camera_id),
        registry=CameraRegistry(client), opener=opener,
    )  # fmt: skip
    run_capture(capture, 2.5)
    assert len(opened) >= 3
    assert opened[2] - opened[1] >= 0.4  # backed off before trying again
    assert capture.counters.frames_read >= 20
    assert capture.counters.errors >= 2
    assert capture.counters.last_error is not None


def test_a_missing_file_stops_the_capture_with_a_failed_heartbeat(
    servers: Servers, client: redis.Redis, tmp_path: Path
) -> None:
    """A file that disappears is not retried forever: the capture fails and says why."""
    settings = base_settings(servers, tmp_path)
    spec = SourceSpec("file", str(tmp_path / "gone.avi"))
    capture = Capture(
        settings, spec=spec, buffer=FrameBuffer(client, settings.camera_id),
        registry=CameraRegistry(client),
        opener=partial(open_source, frame_format=settings.frame_format),
    )  # fmt: skip
    with pytest.raises(SourceError, match=r"gone\.avi"):
        capture.run(threading.Event())
    status = CameraRegistry(client).read(settings.camera_id)
    assert status is not None
    assert status.state == "failed"
    assert "gone.avi" in str(status.last_error)


class SteppingClock:
    """A clock that moves on a fixed step every time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 1_800_000_000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize(
    ("frames_per_session", "delays"),
    [(400, [0.5, 0.5, 0.5]), (1, [0.5, 1.0, 2.0])],
    ids=["healthy sessions start over", "failing sessions back off"],
)
def test_the_reconnect_backoff_starts_over_after_a_healthy_session(
    servers: Servers,
    client: redis.Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    frames_per_session: int,
    delays: list[float],
) -> None:
    """After a session of many seconds the next outage waits 0.5 s, not the last delay doubled."""
    settings = base_settings(servers, tmp_path)
    capture = Capture(
        settings, spec=SourceSpec("network", "rtsp://camera/stream"),
        buffer=FrameBuffer(client, settings.camera_id), registry=CameraRegistry(client),
        opener=lambda spec: FlakyCamera(frames_per_session, paced=False), clock=SteppingClock(0.05),
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=capture.run, args=(stop,))
    with caplog.at_level("WARNING", logger="services.capture.service"):
        thread.start()
        deadline = time.monotonic() + 20
        while caplog.text.count("reconnecting in") < len(delays):
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.01)
        stop.set()
        thread.join(timeout=10)
    waited = [float(line.split("reconnecting in ")[1].split(" s")[0])
              for line in caplog.messages if "reconnecting in" in line]  # fmt: skip
    assert waited[: len(delays)] == delays
