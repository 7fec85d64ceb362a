"""Accepting an event against real Redis: its window stays whole however frames interleave."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import redis

from services.common.contracts import EventIn, to_us, utcnow
from services.common.framebuffer import FrameBuffer
from services.common.ingest import Ingest
from services.common.recordings import RecordingStore
from services.common.taskqueue import make_celery
from tests.conftest import Servers, base_settings

N = 5
Result = TypeVar("Result")


@pytest.fixture
def lane(servers: Servers, tmp_path: Path) -> Iterator[tuple[Ingest, FrameBuffer]]:
    """An Ingest wired as the API's, on a broker database no worker reads."""
    idle_broker = servers.broker.url.rsplit("/", 1)[0] + "/6"
    settings = base_settings(servers, tmp_path, broker_url=idle_broker, frames=N)
    frames = redis.Redis.from_url(servers.frames.url)
    state = redis.Redis.from_url(idle_broker)
    buffer = FrameBuffer(frames, settings.camera_id)
    store = RecordingStore(state)
    yield Ingest(settings, store, {settings.camera_id: buffer}, make_celery(settings)), buffer
    state.flushdb()
    frames.close()
    state.close()


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


def then_a_frame(step: Callable[..., Result], buffer: FrameBuffer) -> Callable[..., Result]:
    """The step as it was, with a frame arriving right after it."""

    def wrapped(*args: object, **kwargs: object) -> Result:
        result = step(*args, **kwargs)
        arrive(buffer)
        return result

    return wrapped


def test_frames_arriving_during_accept_never_cut_the_window(
    lane: tuple[Ingest, FrameBuffer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame lands after each Redis step of accept; the N frames before the moment survive.

    The stream holds exactly N frames, so a frame arriving between the moment and its pin
    would trim the window's oldest frame unless the pin comes first.
    """
    ingest, buffer = lane
    for _ in range(N):
        arrive(buffer)
    monkeypatch.setattr(ingest.store, "create", then_a_frame(ingest.store.create, buffer))
    monkeypatch.setattr(buffer, "pin", then_a_frame(buffer.pin, buffer))
    accepted = ingest.accept(EventIn(), idempotency_key=None)
    for _ in range(3 * N):
        arrive(buffer)
    recording = ingest.store.get(accepted.answer.recording_id)
    assert recording is not None
    window = buffer.window(to_us(recording.event_time), N, 0)
    read = [frame.stream_id for frame in buffer.read(window.ids[0], window.ids[-1], 10**9)]
    assert len(window.ids) == N
    assert read == window.ids
