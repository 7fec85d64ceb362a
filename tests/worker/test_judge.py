"""The outcome judgement as a table: which status, and which reason, for which shortfall."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.kernel.contracts import FrameRecord, RecordingJob, Status
from services.stores.framebuffer import Window
from services.worker.recorder import judge

RECEIVED = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
NOW = RECEIVED.timestamp() + 1  # a second after receipt, inside the pin
DEADLINE_MS = round(RECEIVED.timestamp() * 1000) + 30_000


def job(*, pinned: int = 5, buffered: int = 5, after: int = 0) -> RecordingJob:
    """A job for 5 frames before the moment (and `after` after it), as pinned at receipt."""
    return RecordingJob(
        recording_id="a" * 32, camera_id="lane-1", event_us=round(RECEIVED.timestamp() * 1e6),
        event_time_source="received", received_at=RECEIVED, frames_before=5, frames_after=after,
        pinned_first_id="1-0", pinned_count=pinned, buffered_at_pin=buffered, pin_member="m",
        pin_deadline_ms=DEADLINE_MS, metadata={},
    )  # fmt: skip


def frames(count: int, *, gap_after: int | None = None) -> list[FrameRecord]:
    """Saved frames with consecutive capture sequences, or one gap of 2 after `gap_after`."""
    records = []
    for k in range(count):
        sequence = k + (2 if gap_after is not None and k > gap_after else 0)
        record = FrameRecord(
            file=f"frame_{k + 1:04d}.png", source_index=k, sequence=sequence,
            captured_at=RECEIVED, stream_id=f"{k + 1}-0", sha256="", width=1, height=1,
        )  # fmt: skip
        records.append(record)
    return records


def window(before: int, after: int = 0) -> Window:
    """A window of `before` IDs at or before the moment and `after` after it."""
    return Window([f"{k}-0" for k in range(before)], [f"a{k}-0" for k in range(after)])


CASES = [
    # (what, job, window, frames saved, now, pin held) -> status, reason fragment
    ("everything saved", job(), window(5), frames(5), NOW, True, Status.COMPLETE, None),
    ("source just started", job(pinned=2, buffered=2), window(2), frames(2), NOW, True,
     Status.PARTIAL, "the source had just started"),
    ("event older than the buffer", job(pinned=2, buffered=30), window(2), frames(2), NOW,
     True, Status.PARTIAL, "older than the buffer"),
    ("frame store lost the pin", job(), window(1), frames(1), NOW, False, Status.PARTIAL,
     "lost the pinned frames"),
    ("pin expired", job(), window(3), frames(3), NOW + 60, False, Status.PARTIAL,
     "the pin expired"),
    ("hard cap", job(), window(3), frames(3), NOW, True, Status.PARTIAL, "hard cap"),
    ("frames after missing", job(after=4), window(5, 1), frames(6), NOW, True, Status.PARTIAL,
     "only 1 of 4 frames after the event"),
    ("trimmed while read", job(), window(5), frames(3), NOW, True, Status.PARTIAL,
     "2 frames were trimmed while being read"),
    ("frames dropped inside", job(), window(5), frames(5, gap_after=1), NOW, True,
     Status.PARTIAL, "2 frames the capture read within the window could not be stored"),
    ("nothing at all", job(pinned=0, buffered=0), window(0), [], NOW, True, Status.FAILED,
     "only 0 of 5 frames were captured"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "the_job", "the_window", "saved", "now", "held", "status", "reason"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_each_shortfall_gets_its_status_and_reason(
    what: str,
    the_job: RecordingJob,
    the_window: Window,
    saved: list[FrameRecord],
    now: float,
    held: bool,
    status: Status,
    reason: str | None,
) -> None:
    """Complete only with every frame asked for, consecutive; otherwise the reason says why."""
    got_status, got_reason = judge(the_job, the_window, saved, now, held)
    assert got_status is status
    if reason is None:
        assert got_reason is None
    else:
        assert reason in str(got_reason)
