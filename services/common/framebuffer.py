"""The stream adapter: the only code that talks XADD/XRANGE to a camera's frame stream.

Beside the stream sits a small index (sorted set: stream ID scored by capture time in µs) so
that a window can be found and pinned without touching frame bytes, and a sorted set of pins
that keeps a window's frames in the stream until its job has read them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis import asyncio as aioredis

from services.common import keys
from services.common.framecodec import Frame, Pixels, decode_entry, encode_entry

log = logging.getLogger(__name__)

# Pins a window: finds the N newest frames at or before the bound in the index (never in the
# stream itself, whose replies would copy megabytes) and registers a pin scored by the oldest
# one's capture time. With no frame yet, the pin holds frames from ARGV[4] on.
PIN_SCRIPT = """
local found = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf',
                         'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local count = #found / 2
local buffered = redis.call('ZCARD', KEYS[1])
if count == 0 then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  return {false, 0, buffered}
end
redis.call('ZADD', KEYS[2], found[2 * count], ARGV[3])
return {found[2 * count - 1], count, buffered}
"""

# Trims after each append: keep the N newest frames and everything a live pin holds, drop
# expired pins, and never keep more than the hard cap. Scores stay strings where they are
# concatenated, as Lua would print a number with too few digits.
TRIM_SCRIPT = """
local keep, cap, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local nth = redis.call('ZREVRANGE', KEYS[2], keep - 1, keep - 1, 'WITHSCORES')
if #nth == 0 then return 0 end
local floor, floor_text = tonumber(nth[2]), nth[2]
while true do
  local pin = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #pin == 0 then break end
  local deadline = tonumber(string.match(pin[1], '|(%d+)$'))
  if deadline == nil or deadline < now then
    redis.call('ZREM', KEYS[3], pin[1])
  else
    if tonumber(pin[2]) < floor then floor, floor_text = tonumber(pin[2]), pin[2] end
    break
  end
end
local capped = redis.call('ZREVRANGE', KEYS[2], cap - 1, cap - 1, 'WITHSCORES')
if #capped > 0 and tonumber(capped[2]) > floor then floor_text = capped[2] end
local first = redis.call('ZRANGEBYSCORE', KEYS[2], floor_text, '+inf', 'LIMIT', 0, 1)
if #first == 0 then return 0 end
redis.call('XTRIM', KEYS[1], 'MINID', first[1])
return redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. floor_text)
"""


@dataclass(frozen=True)
class Pin:
    """What the API learnt when it pinned a window: its first frame and how many it holds."""

    first_id: str | None
    count: int
    buffered: int


@dataclass(frozen=True)
class Window:
    """The stream IDs of a recording's frames, oldest first, as the index lists them now."""

    before: list[str]
    after: list[str]

    @property
    def ids(self) -> list[str]:
        """All the window's IDs in capture order."""
        return self.before + self.after


def pin_member(recording_id: str, deadline_ms: int) -> str:
    """The pin's sorted-set member: the recording and when the pin expires."""
    return f"{recording_id}|{deadline_ms}"


class FramePins:
    """The API's hold on one camera's frames, on an asyncio client: pin a window, release it."""

    def __init__(self, client: aioredis.Redis, camera_id: str) -> None:
        self._redis = client
        self.camera_id = camera_id
        self._index = keys.frame_index(camera_id)
        self._pins = keys.pins(camera_id)
        self._pin_script = client.register_script(PIN_SCRIPT)

    async def pin(
        self, member: str, frames_before: int, *, moment_us: int | None, empty_from_us: int
    ) -> Pin:
        """Hold the N frames at or before the moment, or the N newest when it is None (now).

        Atomic and reads no frame bytes. Frames newer than the pinned ones are never trimmed
        before it, so a moment stamped after this returns still finds its whole window.
        """
        bound = "+inf" if moment_us is None else moment_us
        first, count, buffered = await self._pin_script(
            keys=[self._index, self._pins], args=[bound, frames_before, member, empty_from_us]
        )
        return Pin(
            first_id=first.decode() if first else None, count=int(count), buffered=int(buffered)
        )

    async def release(self, member: str) -> None:
        """Remove a pin; the capture's next append trims what only it was holding."""
        await self._redis.zrem(self._pins, member)


class FrameBuffer:
    """One camera's capped frame stream, its capture-time index and its pins."""

    def __init__(self, client: redis.Redis, camera_id: str) -> None:
        self._redis = client
        self.camera_id = camera_id
        self._stream = keys.frame_stream(camera_id)
        self._index = keys.frame_index(camera_id)
        self._pins = keys.pins(camera_id)
        self._trim_script = client.register_script(TRIM_SCRIPT)
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
    ) -> str:
        """Add a frame with an ID ordered by capture time, index it, and trim the stream."""
        stream_id = self._next_id(captured_us // 1000)
        fields = encode_entry(pixels, source_index, sequence, captured_us)
        # One round trip, no MULTI: Redis runs the three in order, so the index never names a
        # frame the stream lacks; a reader in between misses at most the newest frame, which
        # the worker waits for anyway.
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(self._stream, cast(Any, fields), id=stream_id)
        pipe.zadd(self._index, {stream_id: captured_us})
        # EVALSHA by hand: a Script object in a pipeline asks SCRIPT EXISTS on every
        # execute, one more round trip per frame.
        trim = (self._stream, self._index, self._pins, keep, max(hard_cap, keep), now_ms)
        pipe.evalsha(self._trim_script.sha, 3, *trim)
        try:
            pipe.execute()
        except redis.exceptions.NoScriptError:
            # Redis restarted and forgot the script; the frame and its index are in.
            self._trim_script(keys=list(trim[:3]), args=list(trim[3:]))
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
