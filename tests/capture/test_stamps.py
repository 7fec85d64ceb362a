"""A frame is stamped with when the camera saw it, not when the capture got round to it: a
capture that falls behind still gives every picture its own time, so an event's window ends
at the picture current at its moment."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from services.capture.service import Capture, LiveStamps
from services.capture.spec import SourceSpec
from services.kernel.framecodec import UNSPECIFIED, Colour, PixelFormat, Pixels
from services.stores.cameras import CameraRegistry
from services.stores.framebuffer import FrameBuffer
from tests.support.servers import Servers, base_settings

FPS = 25.0
PERIOD = 1 / FPS
DECODE = 0.045  # each frame takes longer to decode than it lasts: the capture falls behind


class Clock:
    """The capture's clock; only the slow source moves it."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class SlowFile:
    """A 25 fps file whose every frame takes 45 ms to decode; the test stops after `frames`."""

    fps = FPS
    pixel_format: PixelFormat = "bgr"
    colour: Colour = UNSPECIFIED

    def __init__(self, clock: Clock, frames: int, stop: threading.Event) -> None:
        self.clock, self.frames, self.stop = clock, frames, stop
        self.index = 0

    def read(self) -> tuple[Pixels, int] | None:
        self.clock.now += DECODE
        index = self.index
        self.index += 1
        if self.index == self.frames:
            self.stop.set()
        return np.zeros((4, 4, 3), dtype=np.uint8), index

    def position(self) -> float | None:
        return None

    def close(self) -> None:
        """Nothing to release."""


@pytest.fixture
def client(servers: Servers) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(servers.frames.url)
    yield connection
    connection.close()


def test_a_lagging_file_capture_stamps_each_frame_with_its_due_time(
    servers: Servers, client: redis.Redis, tmp_path: Path
) -> None:
    settings = base_settings(servers, tmp_path, frames=200, max_buffer_frames=300)
    clock, stop = Clock(), threading.Event()
    buffer = FrameBuffer(client, settings.camera_id)
    capture = Capture(
        settings, spec=SourceSpec("file", "slow.avi"), buffer=buffer,
        registry=CameraRegistry(client), opener=lambda spec: SlowFile(clock, 100, stop),
        clock=clock,
    )  # fmt: skip
    capture.run(stop)
    everything = buffer.window(2**62, 100, 0).before
    frames = list(buffer.read(everything[0], everything[-1], 1 << 30))
    assert [frame.source_index for frame in frames] == list(range(100))
    first = frames[0].captured_us
    for number, frame in enumerate(frames):  # the schedule, 40 ms apart, however late
        assert abs(frame.captured_us - first - round(number * PERIOD * 1e6)) <= 1
    assert capture.counters.late > 50
    assert capture.counters.lag == pytest.approx(100 * DECODE - 99 * PERIOD, abs=0.01)
    status = capture.status(clock.now)
    assert status.lag_ms == pytest.approx(capture.counters.lag * 1000, abs=0.1)

    # An event 10 ms after picture 50 was due: its window ends at picture 50. Stamped when
    # pushed (50 x 45 ms after the start), picture 50 would look later than the moment, and
    # the window would end about 6 pictures too early.
    moment_us = first + round(50 * PERIOD * 1e6) + 10_000
    window = buffer.window(moment_us, 5, 0)
    newest = list(buffer.read(window.before[-1], window.before[-1], 1 << 30))
    assert newest[0].source_index == 50


@pytest.mark.parametrize(
    ("reads", "expected"),
    [
        # (read at, position): delays of 10-90 ms jitter; the stamp is the position on the
        # least-delayed read's clock, never later than the read.
        (
            [(100.01, 0.0), (100.09, 0.04), (100.09, 0.08), (100.13, 0.12)],
            [100.01, 100.05, 100.09, 100.13],
        ),
        # A burst read late keeps each frame's own time.
        (
            [(100.0, 0.0), (100.5, 0.04), (100.5, 0.08), (100.5, 0.12)],
            [100.0, 100.04, 100.08, 100.12],
        ),
        # The stream restarts at 0: the estimate starts over rather than stamping the past.
        (
            [(100.0, 50.0), (100.04, 50.04), (101.0, 0.0), (101.04, 0.04)],
            [100.0, 100.04, 101.0, 101.04],
        ),
        # No position (the backend reports none): the read time.
        ([(100.0, None), (100.5, None)], [100.0, 100.5]),
    ],
    ids=["jitter", "burst", "restart", "no position"],
)
def test_a_live_frame_is_stamped_with_its_stream_position_on_the_least_delayed_clock(
    reads: list[tuple[float, float | None]], expected: list[float]
) -> None:
    stamps = LiveStamps()
    assert [stamps.stamp(now, position) for now, position in reads] == pytest.approx(expected)


def test_the_live_estimate_follows_a_drifting_camera_clock() -> None:
    """A camera clock 0.1 % slow: the old offsets leave the window, the stamps follow."""
    stamps = LiveStamps(window=10.0)
    for second in range(60):
        for frame in range(25):
            now = 1000.0 + second + frame / 25
            stamp = stamps.stamp(now + 0.02, (now - 1000.0) * 0.999)
    assert now + 0.02 - stamp < 0.05  # within the read delay, after a minute of drift
