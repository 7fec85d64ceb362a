"""Ingest: the capture path's sustainable fps (unpaced) against bare XADD of the same bytes.

Both push the same decoded frames of the sample clip into a fresh Redis, one after the
other, alternating runs. The floor is redis-py `XADD` with `MAXLEN = N` and nothing else;
ours is the capture's own push (XADD + index + trim script in one round trip, the
heartbeat, the metrics), driven by a source that never waits.

Run: .venv/bin/python -m bench.ingest [--frames 300] [--runs 5]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from bench.sources import real_frames
from services.capture.service import Capture
from services.capture.spec import SourceSpec
from services.kernel.framecodec import UNSPECIFIED, Colour, PixelFormat, Pixels
from services.kernel.settings import Settings
from services.runtime.redisserver import RedisServer
from services.stores.cameras import CameraRegistry
from services.stores.framebuffer import FrameBuffer

N = 30
WARMUP = 40


class MemorySource:
    """A live source that hands out decoded frames as fast as they are asked for."""

    fps = 30.0
    pixel_format: PixelFormat = "bgr"
    colour: Colour = UNSPECIFIED

    def __init__(self, frames: list[Pixels], total: int, done: threading.Event) -> None:
        self.frames = frames
        self.total = total
        self.done = done
        self.sent = 0

    def read(self) -> tuple[Pixels, int] | None:
        if self.sent == self.total:
            self.done.set()
            time.sleep(0.01)
            return self.frames[0], 0
        self.sent += 1
        return self.frames[self.sent % len(self.frames)], self.sent

    def position(self) -> float | None:
        """No stream position: stamped when read."""
        return None

    def close(self) -> None:
        """Nothing to release."""


def floor_fps(client: redis.Redis, frames: list[Pixels], total: int, url: str) -> float:
    """Bare XADD of the same bytes, capped at N."""
    payloads = [frame.tobytes() for frame in frames]
    started = time.perf_counter()
    for number in range(total):
        client.xadd("floor", {"data": payloads[number % len(payloads)]}, maxlen=N)
    return total / (time.perf_counter() - started)


def capture_fps(client: redis.Redis, frames: list[Pixels], total: int, url: str) -> float:
    """The capture's push path, unpaced."""
    settings = Settings(camera_id="bench", frames=N, redis_url=url, log_level="WARNING")
    done = threading.Event()
    source = MemorySource(frames, total, done)
    capture = Capture(
        settings, spec=SourceSpec("camera", "0"), buffer=FrameBuffer(client, "bench"),
        registry=CameraRegistry(client), opener=lambda spec: source,
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=capture.run, args=(stop,))
    started = time.perf_counter()
    thread.start()
    done.wait()
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    return total / elapsed


def measure(run: Callable[..., float], total: int) -> float:
    """One measurement against a Redis server of its own, warmed by a few frames first."""
    with tempfile.TemporaryDirectory() as work, RedisServer(Path(work)) as server:
        client = redis.Redis.from_url(server.url)
        try:
            run(client=client, total=WARMUP, url=server.url)
            client.flushall()
            return run(client=client, total=total, url=server.url)
        finally:
            client.close()


def main() -> None:
    """Print a markdown table: fps of each, and the ratio, median of paired runs."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| source | bare XADD fps (floor) | capture path fps | ratio (median of pairs) |")
    print("|---|---|---|---|")
    for width, height in ((1280, 720), (1920, 1080)):
        frames = real_frames(width, height, 10)
        floors, ours = [], []
        floor = functools.partial(floor_fps, frames=frames)
        capture = functools.partial(capture_fps, frames=frames)
        # Warm both paths first: glibc raises its mmap threshold after the first big free,
        # in this process and in Redis, and whichever path ran first would pay for both.
        measure(floor, WARMUP)
        measure(capture, WARMUP)
        for _ in range(args.runs):
            floors.append(measure(floor, args.frames))
            ours.append(measure(capture, args.frames))
        ratios = [mine / floor for mine, floor in zip(ours, floors, strict=True)]
        print(
            f"| {width}x{height} | {statistics.median(floors):.0f} | "
            f"{statistics.median(ours):.0f} | {statistics.median(ratios):.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
