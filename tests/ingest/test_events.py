"""Accepting an event against real Redis: its window stays whole however frames interleave."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import redis

from services.ingest.events import make_ingest, store_clients
from services.kernel.contracts import EventIn, Recording, to_us, utcnow
from services.kernel.settings import Settings
from services.stores.framebuffer import FrameBuffer
from tests.support.servers import Servers, base_settings

N = 5
Result = TypeVar("Result")


@pytest.fixture
def lane(servers: Servers, tmp_path: Path) -> Iterator[tuple[Settings, FrameBuffer]]:
    """Settings on a broker database no worker reads, and the camera's buffer."""
    idle_broker = servers.broker.url.rsplit("/", 1)[0] + "/6"
    settings = base_settings(servers, tmp_path, broker_url=idle_broker, frames=N)
    frames = redis.Redis.from_url(servers.frames.url)
    yield settings, FrameBuffer(frames, settings.camera_id)
    redis.Redis.from_url(idle_broker).flushdb()
    frames.close()


def arrive(buffer: FrameBuffer) -> None:
    """The capture appends a frame now, keeping N frames and whatever pins hold."""
    captured = to_us(utcnow())
    buffer.append(
        np.zeros((2, 2, 3), dtype=np.uint8),
        source_index=0,
        sequence=0,
        captured_us=captured,
        keep=N,
        hard_cap=100,
        now_ms=captured // 1000,
    )


def then_a_frame(
    step: Callable[..., Awaitable[Result]], buffer: FrameBuffer
) -> Callable[..., Awaitable[Result]]:
    """The step as it was, with a frame arriving right after it."""

    async def wrapped(*args: object, **kwargs: object) -> Result:
        result = await step(*args, **kwargs)
        arrive(buffer)
        return result

    return wrapped


def test_frames_arriving_during_accept_never_cut_the_window(
    lane: tuple[Settings, FrameBuffer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame lands after each Redis step of accept; the N frames before the moment survive.

    The stream holds exactly N frames, so a frame arriving between the moment and its pin
    would trim the window's oldest frame, unless the moment is taken with the pin.
    """
    settings, buffer = lane
    for _ in range(N):
        arrive(buffer)

    async def accept() -> Recording | None:
        ingest = make_ingest(settings, *store_clients(settings, 5.0), owns=True)
        pins = ingest.pins[settings.camera_id]
        monkeypatch.setattr(pins, "pin", then_a_frame(pins.pin, buffer))
        monkeypatch.setattr(ingest.store, "create", then_a_frame(ingest.store.create, buffer))
        try:
            accepted = await ingest.accept(EventIn(), idempotency_key=None)
            return await ingest.store.get(accepted.answer.recording_id)
        finally:
            await ingest.close()

    recording = asyncio.run(accept())
    for _ in range(3 * N):
        arrive(buffer)
    assert recording is not None
    window = buffer.window(to_us(recording.event_time), N, 0)
    read = [frame.stream_id for frame in buffer.read(window.ids[0], window.ids[-1], 10**9)]
    assert len(window.ids) == N
    assert read == window.ids
