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

from services.kernel import keys
from services.kernel.framecodec import Frame, Pixels, decode_entry, encode_entry

log = logging.getLogger(__name__)

# Pins a window at receipt. The moment is read from this server's clock (TIME) inside the
# script, unless the cashier's trusted event_time is given: then no frame can arrive between
# the moment and the pin. Finds the N newest frames at or before the moment in the index
# (never in the stream itself, whose replies would copy megabytes) and registers a pin
# scored by the oldest one's capture time; its member carries the recording, the moment,
# the frames wanted after it and the deadline, so the trim knows the span it holds. With no
# frame yet, the pin holds from the moment on. ARGV[6] replaces TIME (tests' fake clock).
# Numbers stay strings where they are concatenated: Lua prints a large number with too few
# digits.
PIN_SCRIPT = """
local now = ARGV[6]
if now == '' then
  local time = redis.call('TIME')
  now = time[1] .. string.format('%06d', tonumber(time[2]))
end
local moment = ARGV[1]
if moment == '' then moment = now end
local deadline = string.format('%.0f', math.floor(tonumber(now) / 1000) + tonumber(ARGV[5]))
local member = ARGV[3] .. '|' .. moment .. '|' .. ARGV[4] .. '|' .. deadline
local found = redis.call('ZREVRANGEBYSCORE', KEYS[1], moment, '-inf',
                         'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local count = #found / 2
local buffered = redis.call('ZCARD', KEYS[1])
local first, score = false, moment
if count > 0 then first, score = found[2 * count - 1], found[2 * count] end
redis.call('ZADD', KEYS[2], score, member)
return {first, count, buffered, now, member, deadline}
"""

# Trims after each append: keeps the N newest frames and every live pin's span (its first
# frame to its moment, plus its frames after), drops expired pins, and deletes the frames in
# the gaps between spans, at most ARGV[4] per append so that freeing a backlog's frames
# never stalls Redis. Over the hard cap the oldest frames go, pinned or not. Only the first
# ARGV[5] pins are examined; frames beyond them are kept until a later append.
TRIM_SCRIPT = """
local keep, cap, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, max_pins = tonumber(ARGV[4]), tonumber(ARGV[5])
local total = redis.call('ZCARD', KEYS[2])
if total <= keep then return 0 end
local removed = 0
local function drop(ids)
  if #ids == 0 then return end
  redis.call('XDEL', KEYS[1], unpack(ids))
  redis.call('ZREM', KEYS[2], unpack(ids))
  removed = removed + #ids
end
local function gap(low, high)
  if removed < budget then
    drop(redis.call('ZRANGEBYSCORE', KEYS[2], low, high, 'LIMIT', 0, budget - removed))
  end
end
if total > cap then
  drop(redis.call('ZRANGE', KEYS[2], 0, math.min(total - cap, budget) - 1))
end
local nth = redis.call('ZREVRANGE', KEYS[2], keep - 1, keep - 1, 'WITHSCORES')
local floor, floor_text = tonumber(nth[2]), nth[2]
local low, low_text = nil, '-inf'
local pins = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. floor_text,
                        'WITHSCORES', 'LIMIT', 0, max_pins + 1)
local all_seen = #pins <= 2 * max_pins
for i = 1, math.min(#pins, 2 * max_pins), 2 do
  local member, first = pins[i], pins[i + 1]
  local moment, after, deadline = string.match(member, '|(%d+)|(%d+)|(%d+)$')
  if deadline == nil or tonumber(deadline) < now then
    redis.call('ZREM', KEYS[3], member)
  elseif low_text ~= '+inf' then
    gap(low_text, '(' .. first)
    local hold_text = moment
    if tonumber(after) > 0 then
      local last = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. moment, '+inf',
                              'WITHSCORES', 'LIMIT', tonumber(after) - 1, 1)
      hold_text = last[2] or '+inf'
    end
    if hold_text == '+inf' then
      low_text = '+inf'
    elseif low == nil or tonumber(hold_text) > low then
      low, low_text = tonumber(hold_text), '(' .. hold_text
    end
  end
end
if all_seen and low_text ~= '+inf' then gap(low_text, '(' .. floor_text) end
return removed
"""

# Frames one append may delete beyond its own: a backlog's pinned frames are freed over the
# next appends instead of all at once (at 1080p, hundreds of 6 MB frees stalled Redis).
TRIM_BUDGET = 4
# Pins the trim examines per append; a burst may leave thousands queued.
TRIM_MAX_PINS = 256


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


class FramePins:
    """The API's hold on one camera's frames, on an asyncio client: pin a window, release it."""

    def __init__(self, client: aioredis.Redis, camera_id: str) -> None:
        self._redis = client
        self.camera_id = camera_id
        self._index = keys.frame_index(camera_id)
        self._pins = keys.pins(camera_id)
        self._pin_script = client.register_script(PIN_SCRIPT)

    async def pin(
        self,
        recording_id: str,
        frames_before: int,
        *,
        frames_after: int,
        moment_us: int | None,
        max_delay_ms: int,
        now_us: int | None = None,
    ) -> Pin:
        """Hold the N frames at or before the moment: the trusted event_time, or (None) now.

        "Now" is the frame store's clock, read inside the script: atomic with the pin, and
        the clock of the host the capture writes to. Reads no frame bytes. The pin lasts
        max_delay_ms; `now_us` replaces the clock in tests.
        """
        reply = await self._pin_script(
            keys=[self._index, self._pins],
            args=[
                "" if moment_us is None else moment_us,
                frames_before,
                recording_id,
                frames_after,
                max_delay_ms,
                "" if now_us is None else now_us,
            ],
        )
        first, count, buffered, received, member, deadline = reply
        return Pin(
            first_id=first.decode() if first else None,
            count=int(count),
            buffered=int(buffered),
            received_us=int(received),
            member=member.decode(),
            deadline_ms=int(deadline),
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
        trim = (
            self._stream, self._index, self._pins,
            keep, max(hard_cap, keep), now_ms, TRIM_BUDGET, TRIM_MAX_PINS,
        )  # fmt: skip
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
