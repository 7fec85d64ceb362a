"""The stream adapter: the only code that talks XADD/XRANGE to a camera's frame stream.

Beside the stream sits a small index (sorted set: stream ID scored by capture time in µs) so
that a window can be found and pinned without touching frame bytes, and a sorted set of pins
that keeps a window's frames in the stream until its job has read them.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis import asyncio as aioredis

from services.kernel import keys
from services.kernel.framecodec import (
    UNSPECIFIED,
    Colour,
    Frame,
    PixelFormat,
    Pixels,
    decode_entry,
    encode_entry,
)
from services.stores.scripts import ADVANCE, PIN, TRIM

log = logging.getLogger(__name__)

# Frames one append may delete beyond its own: a backlog's pinned frames are freed over the
# next appends instead of all at once (at 1080p, hundreds of 6 MB frees stalled Redis).
TRIM_BUDGET = 4
# Pins the trim examines per append; a burst may leave thousands queued.
TRIM_MAX_PINS = 256
READ_AHEAD_STOP_SECONDS = 10.0


@dataclass(frozen=True)
class Pin:
    """What the API learnt when it pinned a window: its first frame and how many it holds,
    the moment of receipt by the frame store's clock, and the pin's member and deadline."""

    first_id: str | None
    count: int
    buffered: int
    received_us: int
    member: str
    deadline_ms: int


@dataclass(frozen=True)
class Window:
    """The stream IDs of a recording's frames, oldest first, as the index lists them now."""

    before: list[str]
    after: list[str]

    @property
    def ids(self) -> list[str]:
        """All the window's IDs in capture order."""
        return self.before + self.after


class BufferKeys:
    """One camera's buffer as names: its stream, index and pins.

    The pure half of the buffer, shared by the asyncio shell (`FramePins`, the API's) and
    the blocking one (`FrameBuffer`, the capture's and the worker's), as httpx shares its
    BaseClient between Client and AsyncClient.
    """

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self._stream = keys.frame_stream(camera_id)
        self._index = keys.frame_index(camera_id)
        self._pins = keys.pins(camera_id)

    @property
    def buffer_keys(self) -> tuple[str, str]:
        """The index and pins keys, as the pin script takes them."""
        return self._index, self._pins


def _pin_of(reply: list[Any]) -> Pin:
    first, count, buffered, received, member, deadline = reply
    return Pin(
        first_id=first.decode() if first else None,
        count=int(count),
        buffered=int(buffered),
        received_us=int(received),
        member=member.decode(),
        deadline_ms=int(deadline),
    )


class FramePins(BufferKeys):
    """The API's hold on one camera's frames, on an asyncio client: pin a window, release it."""

    def __init__(self, client: aioredis.Redis, camera_id: str) -> None:
        super().__init__(camera_id)
        self._redis = client
        self.pin_script = client.register_script(PIN.source)

    async def pin(
        self,
        recording_id: str,
        frames_before: int,
        *,
        frames_after: int,
        moment_us: int | None,
        lifetime_ms: int,
        now_us: int | None = None,
    ) -> Pin:
        """Hold the N frames at or before the moment: the trusted event_time, or (None) now.

        "Now" is the frame store's clock, read inside the script: atomic with the pin, and
        the clock of the host the capture writes to. Reads no frame bytes. The pin lasts
        lifetime_ms; `now_us` replaces the clock in tests.
        """
        window = PinRequest(self, recording_id, frames_before, frames_after)
        (pin,) = await pin_together(
            [window], moment_us=moment_us, lifetime_ms=lifetime_ms, now_us=now_us
        )
        return pin

    async def release(self, member: str) -> None:
        """Remove a pin; the capture's next append trims what only it was holding."""
        await self._redis.zrem(self._pins, member)

    async def length(self) -> int:
        """Frames in the stream now."""
        return int(await self._redis.xlen(self._stream))

    async def live_pins(self) -> int:
        """Windows pinned now, expired ones not yet trimmed included."""
        return int(await self._redis.zcard(self._pins))


@dataclass(frozen=True)
class PinRequest:
    """One camera's window to pin: whose recording, how many frames before and after."""

    pins: FramePins
    recording_id: str
    frames_before: int
    frames_after: int


async def pin_together(
    windows: list[PinRequest], *, moment_us: int | None, lifetime_ms: int,
    now_us: int | None = None,
) -> list[Pin]:  # fmt: skip
    """Pin every window at one moment, in one script: a lane's cameras, recorded at the same
    instant by the one frame store they share. See `FramePins.pin`."""
    buffers = [key for window in windows for key in window.pins.buffer_keys]
    asked = [
        value
        for window in windows
        for value in (window.frames_before, window.recording_id, window.frames_after)
    ]
    script_keys, args = PIN.bind(
        buffers=buffers, moment_us="" if moment_us is None else moment_us,
        lifetime_ms=lifetime_ms, now_us="" if now_us is None else now_us, windows=asked,
    )  # fmt: skip
    replies = await windows[0].pins.pin_script(keys=script_keys, args=args)
    return [_pin_of(reply) for reply in replies]


class FrameBuffer(BufferKeys):
    """One camera's capped frame stream, its capture-time index and its pins."""

    def __init__(self, client: redis.Redis, camera_id: str) -> None:
        super().__init__(camera_id)
        self._redis = client
        self._trim_script = client.register_script(TRIM.source)
        self._advance_script = client.register_script(ADVANCE.source)
        self._last_ms: int | None = None
        self._last_seq = -1

    def append(
        self,
        pixels: Pixels,
        *,
        source_index: int,
        sequence: int,
        captured_us: int,
        keep: int,
        hard_cap: int,
        now_ms: int,
        pixel_format: PixelFormat = "bgr",
        colour: Colour = UNSPECIFIED,
    ) -> str:
        """Add a frame with an ID ordered by capture time, index it, and trim the stream."""
        stream_id = self._next_id(captured_us // 1000)
        fields = encode_entry(
            pixels, source_index, sequence, captured_us, pixel_format=pixel_format, colour=colour
        )
        # One round trip, no MULTI: Redis runs the three in order, so the index never names a
        # frame the stream lacks; a reader in between misses at most the newest frame, which
        # the worker waits for anyway.
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(self._stream, cast(Any, fields), id=stream_id)
        pipe.zadd(self._index, {stream_id: captured_us})
        # EVALSHA by hand: a Script object in a pipeline asks SCRIPT EXISTS on every
        # execute, one more round trip per frame.
        script_keys, args = TRIM.bind(
            stream=self._stream, index=self._index, pins=self._pins, keep=keep,
            cap=max(hard_cap, keep), now_ms=now_ms, budget=TRIM_BUDGET, max_pins=TRIM_MAX_PINS,
        )  # fmt: skip
        pipe.evalsha(self._trim_script.sha, len(script_keys), *script_keys, *args)
        try:
            pipe.execute()
        except redis.exceptions.NoScriptError:
            # Redis restarted and forgot the script; the frame and its index are in.
            self._trim_script(keys=script_keys, args=args)
        return stream_id

    def _next_id(self, millis: int) -> str:
        """A stream ID that grows with capture time even if the clock steps back."""
        if self._last_ms is None:
            self._last_ms, self._last_seq = self._newest_id()
        if millis > self._last_ms:
            self._last_ms, self._last_seq = millis, 0
        else:
            self._last_seq += 1
        return f"{self._last_ms}-{self._last_seq}"

    def _newest_id(self) -> tuple[int, int]:
        """The newest ID already in the stream (an earlier capture's), read from the index."""
        newest = cast("list[bytes]", self._redis.zrevrange(self._index, 0, 0))
        if not newest:
            return 0, -1
        millis, seq = newest[0].decode().split("-")
        return int(millis), int(seq)

    def holds(self, member: str) -> bool:
        """Whether a pin is still registered (an expired pin is removed at the next trim)."""
        return self._redis.zscore(self._pins, member) is not None

    def release(self, member: str) -> None:
        """Remove a pin; the next append trims what only it was holding."""
        self._redis.zrem(self._pins, member)

    def claim(self, recording_id: str, token: str, lifetime_ms: int) -> None:
        """Make this attempt the only one that may move the recording's pin (`advance`)."""
        self._redis.set(keys.pin_owner(recording_id), token, px=max(1, lifetime_ms))

    def advance(self, member: str, recording_id: str, token: str, first_us: int) -> bool:
        """Let the pin hold from `first_us` on, freeing the frames its job has written;
        False if another attempt has claimed the pin since (this one was superseded)."""
        script_keys, args = ADVANCE.bind(
            pins=self._pins, owner=keys.pin_owner(recording_id), member=member, token=token,
            first_us=first_us,
        )  # fmt: skip
        return bool(self._advance_script(keys=script_keys, args=args))

    def window(self, event_us: int, frames_before: int, frames_after: int) -> Window:
        """The IDs of the frames at or before the moment (and after it when asked), now."""
        before = cast(
            "list[bytes]",
            self._redis.zrevrangebyscore(self._index, event_us, "-inf", start=0, num=frames_before),
        )
        after = cast(
            "list[bytes]",
            self._redis.zrangebyscore(
                self._index, f"({event_us}", "+inf", start=0, num=frames_after
            )
            if frames_after
            else [],
        )
        return Window(
            before=[item.decode() for item in reversed(before)],
            after=[item.decode() for item in after],
        )

    def newest_us(self) -> int | None:
        """Capture time of the newest frame, or None while the stream is empty."""
        newest = self._redis.zrevrange(self._index, 0, 0, withscores=True)
        return int(newest[0][1]) if newest else None

    def oldest_us(self) -> int | None:
        """Capture time of the oldest frame still buffered."""
        oldest = self._redis.zrange(self._index, 0, 0, withscores=True)
        return int(oldest[0][1]) if oldest else None

    def length(self) -> int:
        """Frames in the stream now."""
        return int(self._redis.xlen(self._stream))

    def read(self, first_id: str, last_id: str, page_bytes: int) -> Iterator[Frame]:
        """Frames from first to last ID inclusive, in pages of about page_bytes each.

        Paging keeps any one reply small: a single reply of thirty 1080p frames blocks
        Redis, and so the capture, for a quarter of a second.
        """
        start, count = first_id, 1
        while True:
            entries = cast(
                "list[tuple[bytes, dict[bytes, bytes]]] | None",
                self._redis.xrange(self._stream, start, last_id, count=count),
            )
            if not entries:
                return
            for stream_id, fields in entries:
                frame = decode_entry(stream_id, fields)
                count = max(1, page_bytes // max(1, frame.pixels.nbytes))
                yield frame
            if frame.stream_id == last_id:
                return
            start = "(" + frame.stream_id

    def read_ahead(self, first_id: str, last_id: str, page_bytes: int) -> ReadAhead:
        """`read`, by a thread of its own that stays up to a page (`page_bytes`, at least a
        frame) ahead of the caller.

        A read is mostly waiting: on Redis to copy the frames into its reply, on the socket.
        Ahead of a caller that encodes, that wait overlaps the encoding instead of adding to
        it (it was a fifth of a 720p job's time, profiled).
        """
        return ReadAhead(self.read(first_id, last_id, page_bytes), page_bytes, self.camera_id)


Drawn = tuple[Frame | None, BaseException | None]


class ReadAhead:
    """Frames drawn from `frames` by a thread of its own, at most `ahead_bytes` of them (at
    least one frame) ahead of the caller, who iterates what `with` gives; leaving the block
    stops the thread. An error of the reads is raised to the caller where its frame would
    have come."""

    def __init__(self, frames: Iterator[Frame], ahead_bytes: int, name: str) -> None:
        self._frames = frames
        self._ahead_bytes = ahead_bytes
        self._ready: deque[Drawn] = deque()
        self._ready_bytes = 0
        self._stopped = False
        self._turn = threading.Condition()
        self._thread = threading.Thread(target=self._draw, name=f"read-ahead-{name}", daemon=True)

    def __enter__(self) -> Iterator[Frame]:
        self._thread.start()
        return self._drawn()

    def __exit__(self, *exc: object) -> None:
        with self._turn:
            self._stopped = True
            self._turn.notify_all()
        # A read stuck on a silent frame store must not hold the caller's own error back;
        # the thread ends by itself once that read returns.
        self._thread.join(timeout=READ_AHEAD_STOP_SECONDS)

    def _draw(self) -> None:
        try:
            for frame in self._frames:
                if not self._hand_over((frame, None)):
                    return
        except BaseException as error:  # handed to the caller, raised there
            self._hand_over((None, error))
            return
        self._hand_over((None, None))

    def _hand_over(self, drawn: Drawn) -> bool:
        """Queue it once there is room; False if the caller stopped first."""
        size = drawn[0].pixels.nbytes if drawn[0] is not None else 0
        with self._turn:
            self._turn.wait_for(
                lambda: (
                    self._stopped
                    or not self._ready
                    or self._ready_bytes + size <= self._ahead_bytes
                )
            )
            if self._stopped:
                return False
            self._ready.append(drawn)
            self._ready_bytes += size
            self._turn.notify_all()
            return True

    def _drawn(self) -> Iterator[Frame]:
        while True:
            with self._turn:
                self._turn.wait_for(lambda: bool(self._ready))
                frame, error = self._ready.popleft()
                if frame is not None:
                    self._ready_bytes -= frame.pixels.nbytes
                self._turn.notify_all()
            if error is not None:
                raise error
            if frame is None:
                return
            yield frame
