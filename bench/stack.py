"""The production layout for benchmarks: two Redis servers and chosen services, as processes."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from services.kernel import keys
from services.kernel.contracts import CameraStatus
from services.kernel.settings import Settings
from services.runtime.launcher import ServiceProcess
from services.runtime.redisserver import RedisServer, free_port
from services.stores.cameras import CameraRegistry


@contextmanager
def running(
    work: Path, video: Path, services: tuple[str, ...], **overrides: object
) -> Iterator[Settings]:
    """Redis servers plus `services` on `video`; yields their settings, stops all after."""
    tag = f"{len(list(work.iterdir()))}"
    with (
        RedisServer(work / f"frames-{tag}", name="frames") as frames,
        RedisServer(work / f"broker-{tag}", persistent=True, name="broker") as broker,
    ):
        values: dict[str, object] = {
            "source": str(video), "camera_id": "bench", "frames": 30, "redis_url": frames.url,
            "broker_url": broker.url, "output_dir": work / f"out-{tag}", "port": free_port(),
            "workers": 1, "log_level": "WARNING", "max_queued": 100_000,
        }  # fmt: skip
        values.update(overrides)
        settings = Settings.model_validate(values)
        processes = [
            ServiceProcess(service, settings, log=work / f"{service}-{tag}.log").start()
            for service in services
        ]
        try:
            yield settings
        finally:
            for process in processes:
                process.send(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=60)


def wait_for_frames(settings: Settings, count: int, timeout: float = 60.0) -> None:
    """Until the capture has put `count` frames in the stream."""
    client = redis.Redis.from_url(str(settings.redis_url))
    deadline = time.monotonic() + timeout
    while client.xlen(keys.frame_stream("bench")) < count:
        if time.monotonic() > deadline:
            raise SystemExit("the capture did not start")
        time.sleep(0.1)
    client.close()


def wait_for_api(settings: Settings, timeout: float = 60.0) -> None:
    """Until the API answers /healthz."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{settings.port}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the API did not start")
        time.sleep(0.1)


def heartbeat(settings: Settings) -> CameraStatus:
    """The capture's current status."""
    client = redis.Redis.from_url(str(settings.redis_url))
    status = CameraRegistry(client).read("bench")
    client.close()
    assert status is not None
    return status


@dataclass(frozen=True)
class Lateness:
    """The capture's late frames among those it read between two heartbeats."""

    late: int
    read: int

    @classmethod
    def between(cls, before: CameraStatus, after: CameraStatus) -> Lateness:
        """What the capture counted from `before` to `after`."""
        return cls(after.late_frames - before.late_frames, after.frames_read - before.frames_read)

    def __str__(self) -> str:
        return f"{self.late} of {self.read} ({100 * self.late / max(1, self.read):.1f} %)"
