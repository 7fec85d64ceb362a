"""Recording state: deliveries, the delivery limit, requeues and the sweep (fakeredis; real:
test_real_redis)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.kernel import keys
from services.kernel.contracts import Manifest, Recording, Status, utcnow
from services.stores.recordings import RecordingStore
from tests.support.storeredis import StoreRedis


@pytest.fixture
def store(store_redis: StoreRedis) -> RecordingStore:
    """Recording state on the test's Redis."""
    return RecordingStore(store_redis.client)


def create(store: RecordingStore, deadline: datetime) -> str:
    """A queued recording, as the API creates it, with the given deadline."""
    now = utcnow()
    recording = Recording(
        recording_id=uuid.uuid4().hex, camera_id="lane-1", status=Status.QUEUED,
        frames_requested=10, event_time=now, received_at=now, updated_at=now, deadline=deadline,
    )  # fmt: skip

    store.create(recording, None, 60)
    return recording.recording_id


def test_each_start_counts_a_delivery_and_pushes_the_deadline_out(store: RecordingStore) -> None:
    """A start marks the recording running, counts it, and never pulls its deadline in."""
    soon, later = utcnow() + timedelta(seconds=10), utcnow() + timedelta(seconds=100)
    recording_id = create(store, soon)
    begun = store.start(recording_id, retries=0, max_deliveries=3, deadline=later)
    assert (begun.status, begun.deliveries) == (Status.RUNNING, 1)
    again = store.start(recording_id, retries=0, max_deliveries=3, deadline=soon)
    recording = store.get(recording_id)
    assert recording is not None
    assert (again.deliveries, recording.deliveries) == (2, 2)
    assert recording.deadline is not None
    assert abs((recording.deadline - later).total_seconds()) < 0.01


def test_a_job_lost_more_than_k_times_fails_but_retries_do_not_count(store: RecordingStore) -> None:
    """Deliveries beyond retries are lost runs; past max_deliveries the recording fails."""
    recording_id = create(store, utcnow() + timedelta(seconds=60))
    deadline = utcnow() + timedelta(seconds=60)
    for retries in range(3):  # three deliveries, each a deliberate retry: none lost
        assert store.start(recording_id, retries=retries, max_deliveries=1, deadline=deadline)
    begun = store.start(recording_id, retries=2, max_deliveries=1, deadline=deadline)
    assert begun.status is Status.FAILED
    recording = store.get(recording_id)
    assert recording is not None
    assert recording.status is Status.FAILED
    assert "died on each of its 1 runs" in str(recording.reason)


def test_a_start_leaves_a_final_recording_alone(store: RecordingStore) -> None:
    """A job delivered after its recording was settled does not reopen it."""
    recording_id = create(store, utcnow() + timedelta(seconds=60))
    store.update(recording_id, Status.COMPLETE, frames_saved=10)
    begun = store.start(recording_id, retries=0, max_deliveries=3, deadline=utcnow())
    assert begun.status is Status.COMPLETE
    assert store.get(recording_id).deliveries is None  # type: ignore[union-attr]


def test_the_sweep_fails_open_recordings_past_their_deadline_only(
    store: RecordingStore, store_redis: StoreRedis
) -> None:
    """Queued and running recordings past their deadline fail with why; others are untouched."""
    now = utcnow()
    queued = create(store, now - timedelta(seconds=1))
    running = create(store, now - timedelta(seconds=1))
    store.start(running, retries=0, max_deliveries=3, deadline=now - timedelta(seconds=1))
    done = create(store, now - timedelta(seconds=1))
    store.update(done, Status.COMPLETE, frames_saved=10)
    waiting = create(store, now + timedelta(seconds=60))
    settled = store.settle_overdue(now)
    assert set(settled) == {queued, running}
    reasons = {rid: store.get(rid).reason for rid in (queued, running)}  # type: ignore[union-attr]
    assert "no worker started its job" in str(reasons[queued])
    assert "did not finish by its deadline" in str(reasons[running])
    assert store.get(done).status is Status.COMPLETE  # type: ignore[union-attr]
    assert store.get(waiting).status is Status.QUEUED  # type: ignore[union-attr]
    assert store_redis.client.zscore(keys.RECORDINGS_OPEN, waiting) is not None
    assert store_redis.client.zscore(keys.RECORDINGS_OPEN, done) is None


def test_a_requeued_job_shows_queued_with_the_reason(store: RecordingStore) -> None:
    """A job taken back from a dead worker reads queued, with why, and a later deadline."""
    recording_id = create(store, utcnow() + timedelta(seconds=1))
    store.start(recording_id, retries=0, max_deliveries=3, deadline=utcnow())
    assert store.requeued(
        recording_id, "its worker stopped answering", utcnow() + timedelta(seconds=60)
    )
    recording = store.get(recording_id)
    assert recording is not None
    assert (recording.status, recording.reason) == (Status.QUEUED, "its worker stopped answering")
    store.update(recording_id, Status.COMPLETE)
    assert not store.requeued(recording_id, "late", utcnow())


def test_the_sweep_takes_a_written_recordings_status_from_its_folder(
    store: RecordingStore, tmp_path: Path
) -> None:
    """A recording written whose status could not be stored becomes what its folder says."""
    now = utcnow()
    recording_id = create(store, now - timedelta(seconds=1))
    manifest = Manifest(
        recording_id=recording_id, camera_id="lane-1", transaction_id=None, event_time=now,
        event_time_source="received", event_time_sent=None, received_at=now, written_at=now,
        status=Status.COMPLETE, reason=None, frames_requested=10, frames_saved=10,
        frames_before=10, frames_after=0, encoder="fpng", frames=[], metadata={},
    )  # fmt: skip
    folder = tmp_path / recording_id

    def written(recording: Recording) -> tuple[Manifest, Path] | None:
        return (manifest, folder) if recording.recording_id == recording_id else None

    assert store.settle_overdue(now, written) == [recording_id]
    settled = store.get(recording_id)
    assert settled is not None
    assert (settled.status, settled.frames_saved, settled.path) == (
        Status.COMPLETE, 10, str(folder),
    )  # fmt: skip
