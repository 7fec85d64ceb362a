"""The recorder as a plain function: real Redis and files, a fake camera and clock."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import NamedTuple, cast

import cv2
import numpy as np
import pytest
import redis

from services.kernel import keys
from services.kernel.contracts import Hold, Recording, RecordingJob, Status, from_us
from services.kernel.framecodec import Pixels
from services.stores.framebuffer import FrameBuffer
from services.stores.recordings import RecordingStore
from services.stores.retention import RetentionStore
from services.stores.storage import Storage
from services.worker.encoder import make_encoder
from services.worker.recorder import Recorder
from tests.support.servers import Servers, receive
from tests.support.videos import draw_index, read_index

START_US = 1_800_000_000_000_000
PERIOD_US = 40_000
MAX_DELAY_MS = 30_000


class FakeClock:
    """A clock the test moves by hand; sleeping advances it."""

    def __init__(self, now_us: int) -> None:
        self.now = now_us / 1e6

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """Pretend time passes."""
        self.now += seconds


class Lane(NamedTuple):
    """A fresh camera buffer, the state store, a recordings root, and the servers behind them."""

    buffer: FrameBuffer
    store: RecordingStore
    root: Path
    servers: Servers


@pytest.fixture
def lane(servers: Servers, tmp_path: Path) -> Iterator[Lane]:
    """A camera of the test's own on the session's servers."""
    frames = redis.Redis.from_url(servers.frames.url)
    state = redis.Redis.from_url(servers.broker.url)
    camera = f"rec-{uuid.uuid4().hex[:8]}"
    yield Lane(FrameBuffer(frames, camera), RecordingStore(state), tmp_path / "recordings", servers)
    frames.close()
    state.close()


def capture(buffer: FrameBuffer, first: int, last: int, keep: int = 10) -> None:
    """The fake camera: indexed frames first..last on the fixed clock."""
    for k in range(first, last + 1):
        captured = START_US + k * PERIOD_US
        buffer.append(
            draw_index(k, 320, 240), source_index=k, sequence=k, captured_us=captured,
            keep=keep, hard_cap=1000, now_ms=captured // 1000,
        )  # fmt: skip


def accept(lane: Lane, moment_us: int, before: int = 5, after: int = 0) -> RecordingJob:
    """What the API does at receipt: pin the window and create the recording."""
    recording_id = uuid.uuid4().hex
    received = from_us(moment_us)
    recording = Recording(
        recording_id=recording_id, camera_id=lane.buffer.camera_id, status=Status.QUEUED,
        frames_requested=before + after, event_time=received, received_at=received,
        updated_at=received,
    )  # fmt: skip
    pin = receive(lane.servers, recording, before, moment_us, MAX_DELAY_MS)
    return RecordingJob(
        recording_id=recording_id, camera_id=lane.buffer.camera_id, event_us=moment_us,
        event_time_source="received", received_at=received, frames_before=before,
        frames_after=after, pinned_first_id=pin.first_id, pinned_count=pin.count,
        buffered_at_pin=pin.buffered, pin_member=pin.member, pin_deadline_ms=pin.deadline_ms,
        metadata={"sku": "123", "nested": {"qty": 2}},
    )  # fmt: skip


def recorder_for(
    buffer: FrameBuffer, store: RecordingStore, root: Path, clock: FakeClock, encoder: str = "fpng"
) -> Recorder:
    """A recorder wired like the worker's, with the fake clock."""
    storage = Storage(root)
    return Recorder(
        buffer_of=cache(lambda camera: buffer),
        store=store,
        storage=storage,
        encode=make_encoder(encoder),
        encoder_name=encoder,
        shared=storage.shared_frames(f"{encoder}-1"),
        settle_timeout=1.0,
        page_bytes=3 * 320 * 240 * 2,
        clock=clock,
        sleep=clock.sleep,
    )


def load_png(path: Path) -> Pixels:
    """A saved PNG, decoded as it is stored."""
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert decoded is not None, path
    return cast("Pixels", decoded)


def saved_indexes(path: Path) -> list[int]:
    """The frame index drawn in each saved PNG, in file order."""
    return [read_index(load_png(png)) for png in sorted(path.glob("frame_*.png"))]


@pytest.mark.parametrize("encoder", ["fpng", "cv2"])
def test_a_late_job_saves_the_pinned_frames_losslessly(lane: Lane, encoder: str) -> None:
    """Frames 3..7 for a moment just after frame 7, though 40 more frames came meanwhile."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 7)
    moment = START_US + 7 * PERIOD_US + 1_000
    job = accept(lane, moment)
    capture(buffer, 8, 48)
    clock = FakeClock(START_US + 48 * PERIOD_US)
    outcome = recorder_for(buffer, store, root, clock, encoder).record(job)
    assert outcome.status is Status.COMPLETE
    assert saved_indexes(outcome.path) == [3, 4, 5, 6, 7]
    for png in sorted(outcome.path.glob("frame_*.png")):
        decoded = load_png(png)
        assert np.array_equal(decoded, draw_index(read_index(decoded), 320, 240))
    manifest = json.loads((outcome.path / "metadata.json").read_text())
    assert manifest["metadata"] == {"sku": "123", "nested": {"qty": 2}}
    assert [f["source_index"] for f in manifest["frames"]] == [3, 4, 5, 6, 7]
    assert (
        outcome.path.parent.name
        == datetime.fromtimestamp(moment / 1e6, timezone.utc).date().isoformat()
    )
    stored = store.get(job.recording_id)
    assert stored is not None
    assert (stored.status, stored.frames_saved) == (Status.COMPLETE, 5)
    assert buffer._redis.zcard(keys.pins(buffer.camera_id)) == 0  # the pin is gone


def test_frames_after_the_event_are_added_when_asked(
    lane: Lane,
) -> None:
    """frames_after adds the frames captured after the moment, in order."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 7)
    job = accept(lane, START_US + 7 * PERIOD_US, before=3, after=2)
    capture(buffer, 8, 12)
    outcome = recorder_for(buffer, store, root, FakeClock(START_US + 12 * PERIOD_US)).record(job)
    assert outcome.status is Status.COMPLETE
    assert saved_indexes(outcome.path) == [5, 6, 7, 8, 9]


def test_a_redelivered_job_is_a_no_op(lane: Lane) -> None:
    """Running the same job twice leaves one recording, unchanged."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 9)
    job = accept(lane, START_US + 9 * PERIOD_US)
    capture(buffer, 10, 10)
    recorder = recorder_for(buffer, store, root, FakeClock(START_US + 10 * PERIOD_US))
    first = recorder.record(job)
    before = (first.path / "metadata.json").read_bytes()
    second = recorder.record(job)
    assert second == first
    assert (first.path / "metadata.json").read_bytes() == before
    assert len(list(root.glob(f"{buffer.camera_id}/*/*"))) == 1


def test_a_source_that_just_started_gives_a_partial_recording(
    lane: Lane,
) -> None:
    """Fewer frames than asked exist: partial, with the reason and the counts."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 2)
    job = accept(lane, START_US + 2 * PERIOD_US, before=5)
    capture(buffer, 3, 3)
    outcome = recorder_for(buffer, store, root, FakeClock(START_US + 3 * PERIOD_US)).record(job)
    assert outcome.status is Status.PARTIAL
    assert outcome.frames_saved == 3
    assert outcome.reason is not None
    assert "just started" in outcome.reason
    assert saved_indexes(outcome.path) == [0, 1, 2]


def test_frames_the_capture_could_not_store_make_the_recording_partial(lane: Lane) -> None:
    """Two frames of the window were read but never stored (frame store down): partial, why."""
    buffer, store, root, _ = lane
    for k in range(8):
        sequence = k if k < 4 else k + 2  # frames 4 and 5 of the capture were dropped
        captured = START_US + sequence * PERIOD_US
        buffer.append(
            draw_index(k, 320, 240), source_index=k, sequence=sequence, captured_us=captured,
            keep=10, hard_cap=1000, now_ms=captured // 1000,
        )  # fmt: skip
    moment = START_US + 9 * PERIOD_US
    job = accept(lane, moment, before=5)
    capture(buffer, 10, 10)
    outcome = recorder_for(buffer, store, root, FakeClock(moment + PERIOD_US)).record(job)
    assert outcome.status is Status.PARTIAL
    assert outcome.frames_saved == 5
    assert "2 frames the capture read within the window could not be stored" in str(outcome.reason)


def test_an_expired_pin_is_reported_and_no_newer_frame_is_saved(
    lane: Lane,
) -> None:
    """A job later than max_delay says the pin expired and never fills in with newer frames."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 9)
    job = accept(lane, START_US + 9 * PERIOD_US)
    late = START_US + 9 * PERIOD_US + (MAX_DELAY_MS + 1000) * 1000
    buffer.append(
        draw_index(11, 320, 240), source_index=11, sequence=11, captured_us=late - 1000,
        keep=10, hard_cap=1000, now_ms=late // 1000,
    )  # fmt: skip
    for k in range(12, 20):
        buffer.append(
            draw_index(k, 320, 240), source_index=k, sequence=k, captured_us=late + k,
            keep=3, hard_cap=1000, now_ms=late // 1000,
        )  # fmt: skip
    outcome = recorder_for(buffer, store, root, FakeClock(late)).record(job)
    assert outcome.status is Status.FAILED
    assert outcome.reason is not None
    assert "pin expired" in outcome.reason
    assert saved_indexes(outcome.path) == []


def test_a_failed_encode_leaves_nothing_behind(
    lane: Lane,
) -> None:
    """An error mid-recording leaves neither a recording folder nor staging leftovers."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 9)
    job = accept(lane, START_US + 9 * PERIOD_US)
    capture(buffer, 10, 10)
    recorder = recorder_for(buffer, store, root, FakeClock(START_US + 10 * PERIOD_US))
    calls = 0

    def flaky(pixels: np.ndarray) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("disk on fire")
        return make_encoder("cv2")(pixels)

    recorder.encode = flaky
    with pytest.raises(RuntimeError, match="disk on fire"):
        recorder.record(job)
    assert list(root.glob(f"{buffer.camera_id}/*/*")) == []
    assert list((root / ".staging").iterdir()) == []


def test_a_hold_placed_while_the_job_runs_shows_in_metadata_json(lane: Lane) -> None:
    """The job's manifest is built without it; the recorder adds it once the state is final."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 7)
    job = accept(lane, START_US + 7 * PERIOD_US + 1_000)
    capture(buffer, 8, 9)
    hold = Hold(reason="case 12", by="lp", at=from_us(START_US))
    retention = RetentionStore(redis.Redis.from_url(lane.servers.broker.url))
    assert retention.hold(job.recording_id, job.camera_id, hold) == "held"
    outcome = recorder_for(buffer, store, root, FakeClock(START_US + 9 * PERIOD_US)).record(job)
    manifest = json.loads((outcome.path / "metadata.json").read_text())
    assert Hold.model_validate(manifest["hold"]) == hold
    stored = store.get(job.recording_id)
    assert stored is not None
    assert stored.hold == hold
    # Its size was taken as written, before the hold grew metadata.json by a line.
    assert stored.bytes is not None
    assert stored.bytes > sum(png.stat().st_size for png in outcome.path.glob("*.png"))


def counting(recorder: Recorder) -> list[int]:
    """Counts the frames the recorder encodes from now on (the list's length)."""
    encode, encoded = recorder.encode, []

    def counted(pixels: Pixels) -> bytes:
        encoded.append(1)
        return encode(pixels)

    recorder.encode = counted
    return encoded


def test_a_window_overlapping_an_earlier_one_encodes_only_its_new_frames(lane: Lane) -> None:
    """Frames 3..7 recorded, then 5..9: the second links 5, 6, 7 from the first and encodes
    8 and 9; every frame is exact and hashes as its manifest says."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 7)
    first = accept(lane, START_US + 7 * PERIOD_US)
    capture(buffer, 8, 9)
    second = accept(lane, START_US + 9 * PERIOD_US)
    capture(buffer, 10, 10)
    recorder = recorder_for(buffer, store, root, FakeClock(START_US + 10 * PERIOD_US))
    encoded = counting(recorder)
    earlier = recorder.record(first).path
    assert len(encoded) == 5
    outcome = recorder.record(second)
    assert outcome.status is Status.COMPLETE
    assert len(encoded) == 5 + 2
    assert saved_indexes(outcome.path) == [5, 6, 7, 8, 9]
    for png in sorted(outcome.path.glob("frame_*.png")):
        decoded = load_png(png)
        assert np.array_equal(decoded, draw_index(read_index(decoded), 320, 240))
    manifest = json.loads((outcome.path / "metadata.json").read_text())
    for frame in manifest["frames"]:
        data = (outcome.path / frame["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == frame["sha256"]
    # The shared frames are the first recording's files, not copies.
    assert (outcome.path / "frame_0001.png").samefile(earlier / "frame_0003.png")
    assert (outcome.path / "frame_0003.png").samefile(earlier / "frame_0005.png")
    assert not (outcome.path / "frame_0004.png").samefile(earlier / "frame_0005.png")
    assert recorder.metrics.frames.labels("shared")._value.get() == 3


def test_a_frame_encoded_otherwise_is_not_shared(lane: Lane) -> None:
    """A recording encoded with cv2 never takes fpng's PNGs, nor the reverse: its manifest
    names the encoder that made its files."""
    buffer, store, root, _ = lane
    capture(buffer, 0, 7)
    first = accept(lane, START_US + 7 * PERIOD_US)
    second = accept(lane, START_US + 7 * PERIOD_US)
    capture(buffer, 8, 8)
    clock = FakeClock(START_US + 8 * PERIOD_US)
    recorder_for(buffer, store, root, clock, "fpng").record(first)
    cv2_recorder = recorder_for(buffer, store, root, clock, "cv2")
    encoded = counting(cv2_recorder)
    outcome = cv2_recorder.record(second)
    assert (outcome.status, len(encoded)) == (Status.COMPLETE, 5)
    assert saved_indexes(outcome.path) == [3, 4, 5, 6, 7]
