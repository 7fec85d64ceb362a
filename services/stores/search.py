"""Finding recordings: newest first through an index, filtered, paged by an opaque cursor.

A cursor is the last recording a page examined, as (index score, recording ID). Recordings
that share a score (the same received millisecond) come in reverse ID order, so "after the
cursor" is exact: a lower score, or the same score and a lower ID. Nothing is skipped or
repeated at a page boundary, however many recordings share one millisecond.

The index is chosen by the most selective filter: a transaction's own index (an index hit,
not a scan), else the camera's, else all recordings; the other filters are checked on the
recordings read, at most MAX_EXAMINED of them per page. A page cut short by that limit still
carries a cursor, so a caller pages on until the cursor is null.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from redis import asyncio as aioredis

from services.kernel import keys
from services.kernel.contracts import RECORDING_ID_PATTERN, Recording, Status
from services.stores.recordings import parse_recording, score_of

MAX_EXAMINED = 5000
BATCH = 200
_RECORDING_ID = re.compile(RECORDING_ID_PATTERN)


class CursorError(ValueError):
    """A cursor this API did not hand out."""


@dataclass(frozen=True)
class Cursor:
    """Where the last page stopped: the score and ID of the last recording it examined."""

    score: int
    recording_id: str

    def encode(self) -> str:
        """Opaque to clients: URL-safe base64 of a small JSON array."""
        raw = json.dumps([self.score, self.recording_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor in `text`; CursorError if it is not one of ours."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            score, recording_id = json.loads(raw)
        except (binascii.Error, ValueError, TypeError):
            raise CursorError("cursor is not one this API handed out") from None
        if not isinstance(score, int) or not _RECORDING_ID.fullmatch(str(recording_id)):
            raise CursorError("cursor is not one this API handed out")
        return cls(score, str(recording_id))


@dataclass(frozen=True)
class RecordingQuery:
    """What a search asks for; None means any."""

    camera_id: str | None = None
    transaction_id: str | None = None
    status: Status | None = None
    since: datetime | None = None  # event moment, inclusive
    until: datetime | None = None  # event moment, inclusive
    hold: bool | None = None
    received_before: datetime | None = None  # the older `before` parameter, exclusive
    cursor: Cursor | None = None
    limit: int = 50
    # How far an event's moment may lie from its receipt (a trusted cashier time): the
    # index is by receipt, so its range is widened by this and the moment checked exactly.
    margin: timedelta = timedelta(minutes=1)

    def index(self) -> str:
        """The index to walk: the most selective one the filters allow."""
        if self.transaction_id:
            return keys.transaction(self.transaction_id)
        if self.camera_id:
            return keys.recordings_of(self.camera_id)
        return keys.RECORDINGS_ALL

    def bounds(self) -> tuple[int | None, int | None]:
        """Index scores (received ms) that can hold a match: (lowest, highest)."""
        lowest = _score_shifted(self.since, -self.margin) if self.since else None
        highest = _score_shifted(self.until, self.margin) if self.until else None
        if self.received_before is not None:
            before = score_of(self.received_before) - 1
            highest = before if highest is None else min(highest, before)
        return lowest, highest

    def matches(self, recording: Recording) -> bool:
        """The filters the index did not apply."""
        return (
            (self.camera_id is None or recording.camera_id == self.camera_id)
            and (self.transaction_id is None or recording.transaction_id == self.transaction_id)
            and (self.status is None or recording.status is self.status)
            and (self.since is None or recording.event_time >= self.since)
            and (self.until is None or recording.event_time <= self.until)
            and (self.hold is None or (recording.hold is not None) == self.hold)
        )


@dataclass(frozen=True)
class Page:
    """One page of recordings, newest first, and the cursor of the next (None: no more)."""

    recordings: list[Recording]
    next_cursor: Cursor | None


async def search(client: aioredis.Redis, query: RecordingQuery) -> Page:
    """The recordings matching `query` after its cursor, newest first."""
    index, (lowest, highest) = query.index(), query.bounds()
    after = query.cursor
    if after is not None and highest is not None and after.score > highest:
        after = None  # the bounds already start below the cursor
    found: list[Recording] = []
    examined = 0
    while len(found) < query.limit and examined < MAX_EXAMINED:
        rows = await _after(client, index, after, highest, lowest)
        if not rows:
            return Page(found, None)
        async with client.pipeline(transaction=False) as pipe:
            for recording_id, _score in rows:
                pipe.hgetall(keys.recording(recording_id))
            replies = await pipe.execute()
        for (recording_id, score), fields in zip(rows, replies, strict=True):
            examined += 1
            after = Cursor(score, recording_id)
            recording = parse_recording(fields)
            if recording is not None and query.matches(recording):
                found.append(recording)
                if len(found) == query.limit:
                    break
    return Page(found, after)


async def _after(
    client: aioredis.Redis,
    index: str,
    cursor: Cursor | None,
    highest: int | None,
    lowest: int | None,
) -> list[tuple[str, int]]:
    """The next BATCH (recording ID, score) of the index after the cursor, newest first."""
    upper: int | str = "+inf" if highest is None else highest
    if cursor is not None:
        upper = cursor.score if highest is None else min(cursor.score, highest)
    lower: int | str = "-inf" if lowest is None else lowest
    skipped = 0
    while True:
        rows = cast(
            "list[tuple[bytes, float]]",
            await client.zrevrangebyscore(
                index, upper, lower, start=skipped, num=BATCH, withscores=True
            ),
        )
        fresh = [
            (member.decode(), int(score))
            for member, score in rows
            if cursor is None
            or int(score) < cursor.score
            or (int(score) == cursor.score and member.decode() < cursor.recording_id)
        ]
        if fresh or len(rows) < BATCH:
            return fresh
        skipped += len(rows)  # a whole batch of the cursor's millisecond already seen


def _score_shifted(moment: datetime, shift: timedelta) -> int | None:
    """The score of a moment moved by `shift`; None (no bound) past the years datetime
    holds, where a bound of year 1 or 9999 would have put it."""
    try:
        return score_of(moment + shift)
    except (OverflowError, ValueError):
        return None
