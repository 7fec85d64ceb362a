"""The session's Redis servers, settings for one test, and what the API does at receipt."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis
from redis import asyncio as aioredis

from services.kernel.contracts import Recording
from services.kernel.settings import Settings
from services.runtime.redisserver import RedisServer
from services.stores.framebuffer import FramePins, Pin
from services.stores.recordings import RecordingStore


@dataclass(frozen=True)
class Servers:
    """The session's two Redis servers: frames (no persistence) and broker/state (AOF)."""

    frames: RedisServer
    broker: RedisServer


def pin_window(
    servers: Servers,
    camera_id: str,
    recording_id: str,
    frames_before: int,
    moment_us: int,
    *,
    frames_after: int = 0,
    max_delay_ms: int = 30_000,
) -> Pin:
    """Pin a window as the API does at receipt, at a moment (and clock) of the test's choosing."""

    async def pin() -> Pin:
        frames = aioredis.Redis.from_url(servers.frames.url)
        try:
            return await FramePins(frames, camera_id).pin(
                recording_id, frames_before, frames_after=frames_after, moment_us=moment_us,
                lifetime_ms=max_delay_ms, now_us=moment_us,
            )  # fmt: skip
        finally:
            await frames.aclose()

    return asyncio.run(pin())


def receive(
    servers: Servers, recording: Recording, frames_before: int, moment_us: int, max_delay_ms: int
) -> Pin:
    """What the API does at receipt, at a moment of the test's choosing: pin, then create."""
    frames_after = recording.frames_requested - frames_before
    pin = pin_window(
        servers, recording.camera_id, recording.recording_id, frames_before, moment_us,
        frames_after=frames_after, max_delay_ms=max_delay_ms,
    )  # fmt: skip

    state_store = redis.Redis.from_url(servers.broker.url)
    try:
        RecordingStore(state_store).create(recording, None, 60)
    finally:
        state_store.close()
    return pin


def base_settings(servers: Servers, output: Path, **overrides: object) -> Settings:
    """Settings for one test: its own camera ID, small frames, the session's servers."""
    values: dict[str, object] = {
        "camera_id": f"cam-{uuid.uuid4().hex[:8]}",
        "redis_url": servers.frames.url,
        "broker_url": servers.broker.url,
        "output_dir": output,
        "frames": 10,
        "workers": 2,
        "log_level": "INFO",
        # Long enough for the next frame at 25 fps; short for jobs of tests with no capture.
        "settle_timeout": 0.5,
    }
    values.update(overrides)
    return Settings.model_validate(values)
