"""Frames are freed from the frame store as they are written, and never lost for it: an
attempt that takes a job over keeps what the earlier one wrote (real Redis and files)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import redis

from services.kernel import keys
from services.kernel.contracts import RecordingJob, Status
from services.runtime.redisserver import RedisServer
from services.stores.framebuffer import FrameBuffer
from services.worker.encoder import make_encoder
from services.worker.journal import JOURNAL
from services.worker.recorder import Recorder, SupersededError
from tests.worker.test_recorder import (
    PERIOD_US,
    START_US,
    FakeClock,
    Lane,
    accept,
    capture,
    recorder_for,
    saved_indexes,
)
from tests.worker.test_recorder import lane as lane  # noqa: PLC0414  # the fixture, shared


def indexed(buffer: FrameBuffer) -> set[int]:
    """The frames (by capture index) the stream holds now."""
    listed = buffer.window(START_US + 10**9, 10**6, 0).ids
    return {int(stream_id.split("-")[0]) * 1000 for stream_id in listed}


def frame_us(k: int) -> int:
    """When the fake camera captured frame k (ms precision, as stream IDs carry it)."""
    return (START_US + k * PERIOD_US) // 1000 * 1000


def pinned_from(lane: Lane, job: RecordingJob) -> float | None:
    """Where the job's pin starts now (capture time, µs)."""
    with redis.Redis.from_url(lane.servers.frames.url) as frames:
        score: float | None = frames.zscore(keys.pins(job.camera_id), job.pin_member)
    return score


def manifest_of(path: Path) -> dict[str, object]:
    """A committed recording's metadata.json."""
    loaded: dict[str, object] = json.loads((path / "metadata.json").read_text())
    return loaded


def interrupted_after_three_frames(
    lane: Lane,
    interrupt: Callable[[RecordingJob], None] = lambda job: fail_for_a_moment(),
    error: type[Exception] = redis.ConnectionError,
) -> tuple[Recorder, RecordingJob]:
    """A 5-frame job (frames 5..9) whose first attempt is interrupted when it encodes its
    fourth frame (by default: a transient error, so it is tried again), ending in `error`;
    the recorder, encoding normally again, and the job."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 9)
    job = accept(lane, START_US + 9 * PERIOD_US, before=5)
    capture(buffer, 10, 10)
    recorder = recorder_for(buffer, store, root, FakeClock(START_US + 10 * PERIOD_US))
    encode = recorder.encode
    calls = 0

    def interrupted_at_the_fourth(pixels: np.ndarray) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 4:
            interrupt(job)
        return encode(pixels)

    recorder.encode = interrupted_at_the_fourth
    with pytest.raises(error):
        recorder.record(job)
    recorder.encode = encode
    return recorder, job


def fail_for_a_moment() -> None:
    """A transient error: the job is tried again."""
    raise redis.ConnectionError("frame store gone for a moment")


def test_each_frame_is_freed_once_written(lane: Lane) -> None:
    """While the job runs, every frame before the one just written leaves the stream."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 9)
    job = accept(lane, START_US + 9 * PERIOD_US, before=5)
    capture(buffer, 10, 10)
    recorder = recorder_for(buffer, store, root, FakeClock(START_US + 10 * PERIOD_US))
    seen_after_each: list[set[int]] = []
    advance = buffer.advance

    def advance_then_capture(member: str, recording_id: str, token: str, first_us: int) -> bool:
        moved = advance(member, recording_id, token, first_us)
        k = 11 + len(seen_after_each)
        capture(buffer, k, k, keep=1)  # the camera goes on; its trim frees what was released
        seen_after_each.append(indexed(buffer))
        return moved

    buffer.advance = advance_then_capture  # type: ignore[method-assign]
    outcome = recorder.record(job)
    assert outcome.status is Status.COMPLETE
    assert saved_indexes(outcome.path) == [5, 6, 7, 8, 9]
    # After frame k was written, frames 5..k-1 are gone and k..9 still there.
    for k, seen in zip(range(5, 10), seen_after_each, strict=True):
        assert {frame_us(j) for j in range(5, k)}.isdisjoint(seen), k
        assert {frame_us(j) for j in range(k, 10)} <= seen, k


def test_a_job_tried_again_keeps_the_frames_written_before(lane: Lane) -> None:
    """A transient error after 3 frames: they are gone from the stream, yet the retry's
    recording is complete and exact, from the frames journaled in the staging folder."""
    buffer, _, root, _ = lane
    recorder, job = interrupted_after_three_frames(lane)
    (left,) = (root / ".staging").iterdir()
    assert sorted(p.name for p in left.glob("*.png")) == [f"frame_000{n}.png" for n in (1, 2, 3)]
    capture(buffer, 11, 30, keep=3)
    assert {frame_us(5), frame_us(6)}.isdisjoint(indexed(buffer))  # written, then freed
    outcome = recorder.record(job, retries=1)
    assert outcome.status is Status.COMPLETE, outcome.reason
    assert saved_indexes(outcome.path) == [5, 6, 7, 8, 9]
    frames = manifest_of(outcome.path)["frames"]
    assert isinstance(frames, list)
    assert [frame["sequence"] for frame in frames] == [5, 6, 7, 8, 9]
    assert (outcome.path / "thumbnail.jpg").is_file()
    assert not (outcome.path / JOURNAL).exists()
    assert list((root / ".staging").iterdir()) == []


def test_a_superseded_attempt_stops_and_the_one_that_took_over_records(lane: Lane) -> None:
    """A takeover while the first attempt still runs: the new attempt claims the pin and
    adopts the folder; the old one fails on its next write or release, and the recording
    is the new attempt's, exact."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 9)
    job = accept(lane, START_US + 9 * PERIOD_US, before=5)
    capture(buffer, 10, 10)
    clock = FakeClock(START_US + 10 * PERIOD_US)
    first, second = (recorder_for(buffer, store, root, clock) for _ in range(2))
    encode = make_encoder("fpng")
    calls = 0
    taken_over = []

    def taken_over_at_the_third(pixels: np.ndarray) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 3:
            taken_over.append(second.record(job))
        return encode(pixels)

    first.encode = taken_over_at_the_third
    with pytest.raises(SupersededError):
        first.record(job)
    (outcome,) = taken_over
    assert outcome.status is Status.COMPLETE, outcome.reason
    assert saved_indexes(outcome.path) == [5, 6, 7, 8, 9]
    assert list((root / ".staging").iterdir()) == []


def test_an_attempt_superseded_before_its_folder_is_adopted_leaves_it(lane: Lane) -> None:
    """The new attempt claims the pin, then renames the folder: an old attempt refused in
    between must leave its folder, whose frames are freed, for the new one to adopt."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 9)
    job = accept(lane, START_US + 9 * PERIOD_US, before=5)
    capture(buffer, 10, 10)
    old = recorder_for(buffer, store, root, FakeClock(START_US + 10 * PERIOD_US))
    advance, released = buffer.advance, []

    def claimed_after_three(member: str, recording_id: str, token: str, first_us: int) -> bool:
        """Frames 1-3 written, so 5 and 6 freed; then a newer attempt claims the pin."""
        moved = advance(member, recording_id, token, first_us)
        released.append(first_us)
        if len(released) == 3:
            buffer.claim(recording_id, "newer", lifetime_ms=60_000)
        return moved

    buffer.advance = claimed_after_three  # type: ignore[method-assign]
    with pytest.raises(SupersededError):
        old.record(job)
    buffer.advance = advance  # type: ignore[method-assign]
    (left,) = (root / ".staging").iterdir()
    assert len(list(left.glob("*.png"))) >= 3
    capture(buffer, 11, 30, keep=3)
    assert {frame_us(5), frame_us(6)}.isdisjoint(indexed(buffer))
    outcome = old.record(job)  # as the attempt that took over
    assert outcome.status is Status.COMPLETE, outcome.reason
    assert saved_indexes(outcome.path) == [5, 6, 7, 8, 9]


def test_a_corrupt_frame_is_written_again_not_kept(lane: Lane) -> None:
    """The adopting attempt keeps only frames whose files hash to their journal entry."""
    root = lane.root
    recorder, job = interrupted_after_three_frames(lane)
    (left,) = (root / ".staging").iterdir()
    (left / "frame_0003.png").write_bytes(b"not the frame")  # frame 7, still pinned
    outcome = recorder.record(job, retries=1)
    assert outcome.status is Status.COMPLETE, outcome.reason
    assert saved_indexes(outcome.path) == [5, 6, 7, 8, 9]


def test_a_pin_is_released_even_when_the_frame_store_is_full(tmp_path: Path) -> None:
    """Past maxmemory Redis refuses writes that grow it; freeing frames must still work."""
    with RedisServer(tmp_path / "redis", name="full") as server:
        client = redis.Redis.from_url(server.url)
        buffer = FrameBuffer(client, "cam")
        client.zadd(keys.pins("cam"), {"member": 1})
        buffer.claim("rec", "mine", lifetime_ms=60_000)
        client.config_set("maxmemory", 1)
        with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
            client.set("anything", 1)
        assert buffer.advance("member", "rec", "mine", 5)
        assert client.zscore(keys.pins("cam"), "member") == 5
        client.close()
