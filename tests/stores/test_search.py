"""Search: filters, newest first, and a cursor that never skips or repeats (fakeredis; real:
test_real_redis)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.kernel.contracts import Hold, Recording, Status
from services.stores.recordings import RecordingStore
from services.stores.search import Cursor, CursorError, Page, RecordingQuery, search
from tests.support.storeredis import StoreRedis

T0 = datetime.fromisoformat("2026-11-27T10:00:00+00:00")


def add(
    store_redis: StoreRedis,
    received: datetime,
    *,
    camera: str = "lane-1",
    transaction: str | None = None,
    status: Status = Status.COMPLETE,
    hold: Hold | None = None,
) -> str:
    """A recording received at `received`, moved to `status`."""
    recording = Recording(
        recording_id=uuid.uuid4().hex, camera_id=camera, transaction_id=transaction,
        status=Status.QUEUED, frames_requested=1, event_time=received, received_at=received,
        updated_at=received, deadline=received, hold=hold,
    )  # fmt: skip
    store = RecordingStore(store_redis.client)
    store.create(recording, None, 60)
    if status is not Status.QUEUED:
        store.update(recording.recording_id, status)
    return recording.recording_id


def find(store_redis: StoreRedis, query: RecordingQuery) -> Page:
    async def run() -> Page:
        client = store_redis.new_async()
        try:
            return await search(client, query)
        finally:
            await client.aclose()

    return asyncio.run(run())


def every_page(store_redis: StoreRedis, query: RecordingQuery) -> list[list[str]]:
    """The IDs of each page, following cursors to the end."""
    pages = []
    while True:
        page = find(store_redis, query)
        pages.append([recording.recording_id for recording in page.recordings])
        if page.next_cursor is None:
            return pages
        query = RecordingQuery(**{**query.__dict__, "cursor": page.next_cursor})


def test_many_recordings_in_one_millisecond_page_without_skips_or_repeats(
    store_redis: StoreRedis,
) -> None:
    same_ms = [add(store_redis, T0) for _ in range(57)]
    older = add(store_redis, T0 - timedelta(milliseconds=1))
    newer = add(store_redis, T0 + timedelta(milliseconds=1))
    pages = every_page(store_redis, RecordingQuery(limit=10))
    seen = [recording_id for page in pages for recording_id in page]
    assert len(seen) == len(set(seen)) == 59
    assert seen[0] == newer
    assert seen[-1] == older
    assert sorted(seen[1:-1]) == sorted(same_ms)
    assert [len(page) for page in pages] == [10] * 5 + [9]


def test_a_transaction_is_found_through_its_own_index(store_redis: StoreRedis) -> None:
    for number in range(30):
        add(store_redis, T0 + timedelta(seconds=number), transaction=f"T-{number}")
    wanted = add(store_redis, T0 - timedelta(days=3), transaction="T-4711", camera="lane-2")
    page = find(store_redis, RecordingQuery(transaction_id="T-4711"))
    assert [recording.recording_id for recording in page.recordings] == [wanted]
    assert page.next_cursor is None
    assert find(store_redis, RecordingQuery(transaction_id="T-4711", camera_id="lane-1")) == Page(
        [], None
    )


def test_filters_combine(store_redis: StoreRedis) -> None:
    hold = Hold(reason="case", by="lp", at=T0)
    held = add(store_redis, T0, camera="lane-2", hold=hold)
    failed = add(store_redis, T0 + timedelta(minutes=5), camera="lane-2", status=Status.FAILED)
    old = add(store_redis, T0 - timedelta(hours=2), camera="lane-2")
    add(store_redis, T0, camera="lane-1")

    def ids(**filters: object) -> list[str]:
        query = RecordingQuery(**filters)  # type: ignore[arg-type]
        return [recording.recording_id for recording in find(store_redis, query).recordings]

    assert ids(camera_id="lane-2") == [failed, held, old]
    assert ids(camera_id="lane-2", hold=True) == [held]
    assert ids(camera_id="lane-2", hold=False) == [failed, old]
    assert ids(camera_id="lane-2", status=Status.FAILED) == [failed]
    window = {"since": T0 - timedelta(minutes=1), "until": T0 + timedelta(minutes=1)}
    assert ids(camera_id="lane-2", **window) == [held]
    assert len(ids(**window)) == 2


def test_a_cursor_that_was_not_handed_out_is_refused() -> None:
    cursor = Cursor(1_800_000_000_000, uuid.uuid4().hex)
    assert Cursor.decode(cursor.encode()) == cursor
    for bad in ("", "xyz", Cursor(1, "../etc").encode(), "W10"):
        with pytest.raises(CursorError):
            Cursor.decode(bad)


def test_moments_at_the_ends_of_the_calendar_are_no_bound_rather_than_an_error() -> None:
    """The fuzzer's find: `since=0001-01-01T00:00:30-23:00` minus the margin overflowed."""
    earliest = datetime(1, 1, 1, 0, 0, 30, tzinfo=timezone(timedelta(hours=-23)))
    latest = datetime(9999, 12, 31, 23, 59, tzinfo=timezone.utc)
    assert RecordingQuery(since=earliest, until=latest).bounds()[0] is None
    assert RecordingQuery(until=latest, margin=timedelta(days=1)).bounds() == (None, None)
