"""The frame buffer: windows, pins, trimming and paged reads (fakeredis; real: test_real_redis)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import pytest
import redis

from services.kernel import keys
from services.kernel.framecodec import Frame
from services.stores.framebuffer import TRIM_BUDGET, FrameBuffer, FramePins, Pin
from tests.support.storeredis import StoreRedis

START_US = 1_800_000_000_000_000  # a fixed clock: frame k is captured at START + k * 40 ms
PERIOD_US = 40_000


@pytest.fixture
def client(store_redis: StoreRedis) -> redis.Redis:
    """A client on the frame store."""
    return store_redis.client


@pytest.fixture
def buffer(client: redis.Redis, request: pytest.FixtureRequest) -> FrameBuffer:
    """An empty buffer for a camera of this test's own."""
    camera = f"fb-{abs(hash(request.node.name)) % 10**8}"
    client.delete(keys.frame_stream(camera), keys.frame_index(camera), keys.pins(camera))
    return FrameBuffer(client, camera)


def frame(k: int) -> np.ndarray:
    """A small frame whose pixels say which one it is."""
    return np.full((4, 6, 3), k % 256, dtype=np.uint8)


def capture(buffer: FrameBuffer, first: int, last: int, keep: int = 5, cap: int = 50) -> None:
    """Append frames first..last on the fixed clock."""
    for k in range(first, last + 1):
        captured = START_US + k * PERIOD_US
        buffer.append(
            frame(k),
            source_index=k,
            sequence=k,
            captured_us=captured,
            keep=keep,
            hard_cap=cap,
            now_ms=captured // 1000,
        )


class PinAt(Protocol):
    """Pins a window on the test's camera, its clock set to the moment."""

    def __call__(
        self, moment_us: int, frames: int, *, after: int = 0, max_delay_ms: int = 10**6
    ) -> Pin: ...


@pytest.fixture
def pin_at(store_redis: StoreRedis, buffer: FrameBuffer) -> PinAt:
    """Pins on the test's camera at the moments the test chooses, as the API pins them."""

    def pin(moment_us: int, frames: int, *, after: int = 0, max_delay_ms: int = 10**6) -> Pin:
        async def run() -> Pin:
            client = store_redis.new_async()
            try:
                return await FramePins(client, buffer.camera_id).pin(
                    uuid.uuid4().hex, frames, frames_after=after, moment_us=moment_us,
                    lifetime_ms=max_delay_ms, now_us=moment_us,
                )  # fmt: skip
            finally:
                await client.aclose()

        return asyncio.run(run())

    return pin


def indexes(buffer: FrameBuffer) -> list[int]:
    """The source indexes of every frame in the stream, oldest first."""
    newest = buffer.window(START_US + 10**9, 10**6, 0)
    return [frame.source_index for frame in read_all(buffer, newest.ids)]


def test_the_stream_keeps_n_frames_without_pins(buffer: FrameBuffer) -> None:
    """In steady state the stream and its index hold exactly N frames."""
    capture(buffer, 0, 40, keep=5)
    assert buffer.length() == 5
    assert buffer.oldest_us() == START_US + 36 * PERIOD_US


def test_the_window_is_the_n_frames_at_or_before_the_moment(buffer: FrameBuffer) -> None:
    """A moment between two frames selects the N frames up to the earlier one."""
    capture(buffer, 0, 9, keep=10)
    moment = START_US + 6 * PERIOD_US + PERIOD_US // 2
    window = buffer.window(moment, 3, 2)
    indexes = [frame.source_index for frame in read_all(buffer, window.ids)]
    assert indexes == [4, 5, 6, 7, 8]
    exact = buffer.window(START_US + 6 * PERIOD_US, 3, 0)
    assert [f.source_index for f in read_all(buffer, exact.ids)] == [4, 5, 6]


def test_a_pin_holds_its_window_past_n_until_released(buffer: FrameBuffer, pin_at: PinAt) -> None:
    """A pinned window stays while later frames arrive; the frames after it do not."""
    capture(buffer, 0, 9, keep=5)
    pin = pin_at(START_US + 9 * PERIOD_US, 5)
    assert (pin.count, pin.buffered) == (5, 5)
    capture(buffer, 10, 40, keep=5)
    assert indexes(buffer) == [5, 6, 7, 8, 9, 36, 37, 38, 39, 40]
    buffer.release(pin.member)
    capture(buffer, 41, 45, keep=5)
    assert indexes(buffer) == [41, 42, 43, 44, 45]


def test_an_advanced_pin_frees_the_frames_before_its_new_first(
    buffer: FrameBuffer, pin_at: PinAt
) -> None:
    """The owner moves its pin past the frames written; the trim frees them, the rest stay."""
    capture(buffer, 0, 9, keep=5)
    pin = pin_at(START_US + 9 * PERIOD_US, 5)
    buffer.claim("rec", "mine", lifetime_ms=60_000)
    assert buffer.advance(pin.member, "rec", "mine", START_US + 8 * PERIOD_US)
    assert buffer.advance(pin.member, "rec", "mine", START_US + 6 * PERIOD_US)  # never back
    capture(buffer, 10, 40, keep=5)
    assert indexes(buffer) == [8, 9, 36, 37, 38, 39, 40]


def test_only_the_attempt_that_claimed_the_pin_moves_it(buffer: FrameBuffer, pin_at: PinAt) -> None:
    """A superseded attempt's advance is refused (False) and frees nothing."""
    capture(buffer, 0, 9, keep=5)
    pin = pin_at(START_US + 9 * PERIOD_US, 5)
    buffer.claim("rec", "first", lifetime_ms=60_000)
    buffer.claim("rec", "second", lifetime_ms=60_000)
    assert not buffer.advance(pin.member, "rec", "first", START_US + 9 * PERIOD_US)
    capture(buffer, 10, 40, keep=5)
    assert indexes(buffer) == [5, 6, 7, 8, 9, 36, 37, 38, 39, 40]


def test_frames_between_two_pinned_windows_are_freed(buffer: FrameBuffer, pin_at: PinAt) -> None:
    """A backlog keeps each pending window and the N newest frames, not everything since."""
    capture(buffer, 0, 9, keep=5)
    pin_at(START_US + 9 * PERIOD_US, 5)
    capture(buffer, 10, 29, keep=5)
    pin_at(START_US + 29 * PERIOD_US, 5)
    capture(buffer, 30, 60, keep=5)
    assert indexes(buffer) == [5, 6, 7, 8, 9, 25, 26, 27, 28, 29, 56, 57, 58, 59, 60]


def test_a_pin_holds_the_frames_after_its_moment_that_it_asks_for(
    buffer: FrameBuffer, pin_at: PinAt
) -> None:
    """frames_after frames past the moment are kept, even before they have arrived."""
    capture(buffer, 0, 9, keep=5)
    pin_at(START_US + 7 * PERIOD_US, 3, after=4)
    capture(buffer, 10, 30, keep=5)
    assert indexes(buffer) == [5, 6, 7, 8, 9, 10, 11, 26, 27, 28, 29, 30]


def test_one_append_frees_at_most_the_trim_budget(buffer: FrameBuffer, pin_at: PinAt) -> None:
    """Releasing a pin over many frames frees them a few per append, never all at once."""
    capture(buffer, 0, 9, keep=5)
    pin = pin_at(START_US + 9 * PERIOD_US, 5, after=20)
    capture(buffer, 10, 40, keep=5)
    assert buffer.length() == 30
    buffer.release(pin.member)
    capture(buffer, 41, 41, keep=5)
    assert buffer.length() == 30 + 1 - TRIM_BUDGET
    capture(buffer, 42, 60, keep=5)
    assert buffer.length() == 5


def test_an_expired_pin_stops_holding_frames(buffer: FrameBuffer, pin_at: PinAt) -> None:
    """After its deadline a pin is dropped, and its frames are freed over the next appends."""
    capture(buffer, 0, 9, keep=5)
    pin_at(START_US + 9 * PERIOD_US, 5, max_delay_ms=11 * PERIOD_US // 1000)
    capture(buffer, 10, 20, keep=5)
    assert indexes(buffer) == [5, 6, 7, 8, 9, 16, 17, 18, 19, 20]
    capture(buffer, 21, 22, keep=5)
    assert indexes(buffer) == [18, 19, 20, 21, 22]


def test_the_hard_cap_wins_over_a_pin(buffer: FrameBuffer, pin_at: PinAt) -> None:
    """Memory stays bounded: past the hard cap, even pinned frames are trimmed."""
    capture(buffer, 0, 4, keep=5, cap=12)
    pin_at(START_US + 4 * PERIOD_US, 5, after=20)
    capture(buffer, 5, 30, keep=5, cap=12)
    assert buffer.length() == 12


def test_a_pin_before_any_frame_holds_only_what_it_asks_after(
    buffer: FrameBuffer, pin_at: PinAt
) -> None:
    """With no frame yet, the pin reports none and keeps just its frames after the moment."""
    pin = pin_at(START_US, 5, after=3)
    assert (pin.first_id, pin.count, pin.buffered) == (None, 0, 0)
    capture(buffer, 1, 20, keep=5)
    assert indexes(buffer) == [1, 2, 3, 16, 17, 18, 19, 20]


def test_reads_come_in_pages_and_in_order(buffer: FrameBuffer) -> None:
    """A read of many frames returns them all, in order, whatever the page size."""
    capture(buffer, 0, 19, keep=20)
    window = buffer.window(START_US + 19 * PERIOD_US, 20, 0)
    for page_bytes in (1, 72, 10**9):
        frames = list(buffer.read(window.ids[0], window.ids[-1], page_bytes))
        assert [f.source_index for f in frames] == list(range(20))
        assert all(np.array_equal(f.pixels, frame(f.source_index)) for f in frames)


def test_a_read_ahead_gives_the_same_frames_in_order(buffer: FrameBuffer) -> None:
    """Read by a thread ahead of the caller, the frames are the same and in order."""
    capture(buffer, 0, 19, keep=20)
    window = buffer.window(START_US + 19 * PERIOD_US, 20, 0)
    for ahead_bytes in (1, 72, 10**9):
        with buffer.read_ahead(window.ids[0], window.ids[-1], ahead_bytes) as frames:
            drawn = list(frames)
        assert [f.source_index for f in drawn] == list(range(20))
        assert all(np.array_equal(f.pixels, frame(f.source_index)) for f in drawn)


def test_a_read_ahead_stays_within_its_bytes(buffer: FrameBuffer) -> None:
    """A caller that is slow gets a reader that waits: one frame's bytes ahead holds one
    frame queued and one drawn, not the window."""
    capture(buffer, 0, 19, keep=20)
    window = buffer.window(START_US + 19 * PERIOD_US, 20, 0)
    reads, drawn = buffer.read, []

    def counted(first_id: str, last_id: str, page_bytes: int) -> Iterator[Frame]:
        for each in reads(first_id, last_id, page_bytes):
            drawn.append(each.source_index)
            yield each

    buffer.read = counted  # type: ignore[method-assign]
    with buffer.read_ahead(window.ids[0], window.ids[-1], frame(0).nbytes) as frames:
        assert next(frames).source_index == 0
        time.sleep(0.3)  # the reader's chance to run ahead
        assert len(drawn) <= 3, drawn
        assert [f.source_index for f in frames] == list(range(1, 20))


def test_a_read_ahead_raises_its_error_to_the_caller_and_stops_when_left(
    buffer: FrameBuffer,
) -> None:
    """A failed read reaches the caller after the frames read before it; a caller that
    stops early leaves no thread behind."""
    capture(buffer, 0, 9, keep=10)
    window = buffer.window(START_US + 9 * PERIOD_US, 10, 0)
    reads = buffer.read

    def failing_after_four(first_id: str, last_id: str, page_bytes: int) -> Iterator[Frame]:
        for number, drawn in enumerate(reads(first_id, last_id, page_bytes)):
            if number == 4:
                raise redis.ConnectionError("frame store gone")
            yield drawn

    buffer.read = failing_after_four  # type: ignore[method-assign]
    got: list[int] = []
    with (
        pytest.raises(redis.ConnectionError, match="gone"),
        buffer.read_ahead(window.ids[0], window.ids[-1], 144) as frames,
    ):
        got.extend(f.source_index for f in frames)
    assert got == [0, 1, 2, 3]
    buffer.read = reads  # type: ignore[method-assign]
    with buffer.read_ahead(window.ids[0], window.ids[-1], 1) as frames:
        assert next(frames).source_index == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("read-ahead-")]


def test_ids_keep_growing_when_the_clock_steps_back(client: redis.Redis) -> None:
    """A capture restarted with a clock behind the stream still appends after its last frame."""
    camera = "fb-clock"
    client.delete(keys.frame_stream(camera), keys.frame_index(camera), keys.pins(camera))
    first = FrameBuffer(client, camera)
    capture(first, 10, 12)
    again = FrameBuffer(client, camera)
    stream_id = again.append(
        frame(0), source_index=0, sequence=0, captured_us=START_US, keep=5, hard_cap=50,
        now_ms=START_US // 1000,
    )  # fmt: skip
    assert stream_id > first.window(START_US + 12 * PERIOD_US, 1, 0).ids[0]


def read_all(buffer: FrameBuffer, ids: list[str]) -> list:  # type: ignore[type-arg]
    """The frames with these IDs."""
    wanted = set(ids)
    return [f for f in buffer.read(ids[0], ids[-1], 10**9) if f.stream_id in wanted]
