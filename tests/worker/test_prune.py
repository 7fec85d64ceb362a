"""Retention rules, holds and safe deletion, one prune pass at a time, on a clock the test
sets (fakeredis; real: tests/stores/test_real_redis.py). The real-process tests are in
tests/test_retention.py."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.kernel import keys
from services.kernel.contracts import Hold, Recording, Status
from services.kernel.settings import CameraRetention, Settings
from services.stores.recordings import RecordingStore
from services.stores.retention import RetentionStore
from services.stores.storage import Storage
from services.worker.prune import DiskUsage, Pruner
from tests.support.storeredis import StoreRedis

MOMENT = datetime.fromisoformat("2026-11-27T12:00:00+00:00")
DAY = timedelta(days=1)


class Box:
    """A recordings root, its state, and a pruner whose clock and disk the test controls."""

    def __init__(self, store_redis: StoreRedis, root: Path, **settings: Any) -> None:
        self.client = store_redis.client
        self.recordings = RecordingStore(self.client)
        self.retention = RetentionStore(self.client)
        self.storage = Storage(root)
        self.now = MOMENT
        self.disk_size = 10**9
        values: dict[str, Any] = {"min_free_bytes": 0, "prune_batch": 3, **settings}
        self.settings = Settings(**values)

    def pruner(self, **overrides: Any) -> Pruner:
        settings = self.settings.model_copy(update=overrides)
        return Pruner(
            settings, self.retention, self.storage, clock=lambda: self.now, disk_usage=self.disk
        )

    def disk(self, _path: str) -> DiskUsage:
        """A disk of `disk_size` bytes holding exactly the files under the root."""
        used = sum(path.stat().st_size for path in self.storage.root.rglob("*") if path.is_file())
        return DiskUsage(self.disk_size, used, self.disk_size - used)

    def record(
        self,
        age: timedelta,
        *,
        size: int = 100,
        camera: str = "lane-1",
        status: Status = Status.COMPLETE,
        hold: Hold | None = None,
    ) -> str:
        """A recording received `age` before now, written (a folder of `size` bytes) and
        final unless `status` says otherwise."""
        moment = self.now - age
        recording = Recording(
            recording_id=uuid.uuid4().hex, camera_id=camera, status=Status.QUEUED,
            frames_requested=1, event_time=moment, received_at=moment, updated_at=moment,
            deadline=moment + timedelta(minutes=10), hold=hold,
        )  # fmt: skip
        self.recordings.create(recording, None, 60)
        folder = self.folder(recording.recording_id)
        folder.mkdir(parents=True)
        (folder / "frame_0001.png").write_bytes(b"x" * size)
        if status.is_final:
            self.recordings.update(
                recording.recording_id, status, frames_saved=1, path=str(folder), size=size
            )
        return recording.recording_id

    def folder(self, recording_id: str) -> Path:
        recording = self.recordings.get(recording_id)
        if recording is None:  # created just now: find it by its ID on disk
            return next(self.storage.root.glob(f"*/*/{recording_id}"))
        return self.storage.path_of(recording.camera_id, recording.event_time.date(), recording_id)

    def kept(self, *ids: str) -> list[bool]:
        """For each recording: still there, state and folder alike."""
        return [self.retention.exists(recording_id) for recording_id in ids]


@pytest.fixture
def box(store_redis: StoreRedis, tmp_path: Path) -> Box:
    return Box(store_redis, tmp_path / "recordings")


def test_the_age_rule_deletes_what_is_older_than_its_days_and_leaves_a_tombstone(
    box: Box,
) -> None:
    old, young = box.record(31 * DAY), box.record(29 * DAY)
    old_folder = box.folder(old)
    report = box.pruner().run()
    assert [(d.recording_id, d.rule, d.size) for d in report.deletions] == [(old, "age", 100)]
    assert box.kept(old, young) == [False, True]
    assert not old_folder.exists()
    assert box.folder(young).exists()
    tombstone = box.client.hgetall(keys.gone(old))
    assert tombstone[b"rule"] == b"age"
    assert b"older than 30 days" in tombstone[b"reason"]
    assert 0 < box.client.ttl(keys.gone(old)) <= 30 * 86400
    assert box.retention.usage() == {"lane-1": 100}
    assert box.client.zscore(keys.RECORDINGS_ALL, old) is None
    assert box.client.zscore(keys.recordings_of("lane-1"), old) is None
    assert box.client.hgetall(keys.DELETIONS) == {b"lane-1|age": b"1"}
    assert not list((box.storage.root / ".trash").iterdir())


def test_the_clock_moving_on_ages_recordings_out(box: Box) -> None:
    recording = box.record(DAY)
    assert box.pruner().run().deletions == []
    box.now += 30 * DAY
    assert [d.recording_id for d in box.pruner().run().deletions] == [recording]


def test_a_camera_override_has_its_own_days(box: Box) -> None:
    overrides = {"lane-2": CameraRetention(days=7)}
    short, default = box.record(8 * DAY, camera="lane-2"), box.record(8 * DAY)
    box.pruner(camera_retention=overrides).run()
    assert box.kept(short, default) == [False, True]


def test_the_size_cap_deletes_oldest_first_until_under_it(box: Box) -> None:
    ids = [box.record((10 - number) * DAY) for number in range(5)]  # oldest first
    report = box.pruner(retention_max_bytes=250).run()
    assert [d.recording_id for d in report.deletions] == ids[:3]
    assert {d.rule for d in report.deletions} == {"size"}
    assert box.kept(*ids) == [False, False, False, True, True]
    assert box.retention.usage() == {"lane-1": 200}


def test_a_camera_cap_leaves_the_other_cameras_alone(box: Box) -> None:
    overrides = {"lane-2": CameraRetention(max_bytes=100)}
    others = [box.record(9 * DAY), box.record(8 * DAY)]
    capped = [box.record(7 * DAY, camera="lane-2"), box.record(6 * DAY, camera="lane-2")]
    report = box.pruner(camera_retention=overrides).run()
    assert [(d.recording_id, d.rule) for d in report.deletions] == [(capped[0], "camera-size")]
    assert box.kept(*others, *capped) == [True, True, False, True]


def test_the_free_space_floor_deletes_oldest_across_cameras(box: Box) -> None:
    box.disk_size = 1000
    first = box.record(5 * DAY, camera="lane-2", size=300)
    second = box.record(4 * DAY, size=300)
    third = box.record(3 * DAY, camera="lane-2", size=300)
    report = box.pruner(min_free_bytes=500).run()  # free 100: two must go to free 700
    assert [(d.recording_id, d.rule) for d in report.deletions] == [
        (first, "free-space"),
        (second, "free-space"),
    ]
    assert box.kept(third) == [True]
    assert report.disk is not None
    assert not report.disk.full
    assert report.disk.free_bytes == 700


def test_a_held_recording_survives_every_rule_until_released(box: Box) -> None:
    box.disk_size = 400
    hold = Hold(reason="case 42", by="lp-team", at=MOMENT)
    held_from_event = box.record(400 * DAY, hold=hold, size=300)
    held_later = box.record(300 * DAY, size=50)
    assert box.retention.hold(held_later, "lane-1", hold) == "held"
    report = box.pruner(min_free_bytes=200, retention_max_bytes=1, retention_days=1).run()
    assert report.deletions == []
    assert box.kept(held_from_event, held_later) == [True, True]
    assert report.disk is not None
    assert report.disk.full
    assert report.disk.reason is not None
    assert "on hold" in report.disk.reason
    assert box.retention.disk() == report.disk
    released = Hold(reason="case closed", by="lp-team", at=MOMENT)
    assert box.retention.hold(held_from_event, "lane-1", None, released) == "released"
    recording = box.recordings.get(held_from_event)
    assert recording is not None
    assert recording.hold is None
    assert recording.released == released
    report = box.pruner(min_free_bytes=200, retention_max_bytes=1, retention_days=1).run()
    assert [d.recording_id for d in report.deletions] == [held_from_event]
    assert report.disk is not None
    assert not report.disk.full


def test_nothing_unfinished_or_within_its_deadline_is_deleted(box: Box) -> None:
    running = box.record(40 * DAY, status=Status.RUNNING)
    box.recordings.start(running, retries=0, max_deliveries=3, deadline=MOMENT)
    fresh = box.record(timedelta(minutes=1))  # final, but its deadline is 9 minutes away
    box.disk_size = 300
    report = box.pruner(min_free_bytes=10**6, retention_max_bytes=1).run()
    assert report.deletions == []
    assert box.kept(running, fresh) == [True, True]
    assert box.folder(running).exists()
    assert box.folder(fresh).exists()


def test_a_dry_run_lists_what_a_pass_would_delete_and_deletes_nothing(box: Box) -> None:
    ids = [box.record(age * DAY) for age in (35, 34, 33, 32, 31, 20, 19, 18)]
    box.disk_size = 1000  # 800 used: 200 free
    settings = {"retention_max_bytes": 250, "min_free_bytes": 900}
    dry = box.pruner(**settings).run(dry_run=True)
    assert box.kept(*ids) == [True] * 8
    assert box.retention.disk() is None
    real = box.pruner(**settings).run()
    assert [(d.recording_id, d.rule) for d in dry.deletions] == [
        (d.recording_id, d.rule) for d in real.deletions
    ]
    # 5 too old; 300 bytes left > 250; then 800 free < 900.
    assert [d.rule for d in real.deletions] == ["age"] * 5 + ["size", "free-space"]
    assert box.kept(*ids) == [False] * 7 + [True]


def test_a_pass_that_died_mid_deletion_is_finished_or_undone(box: Box) -> None:
    deleted, kept = box.record(40 * DAY), box.record(40 * DAY)
    kept_home = box.folder(kept)
    for recording_id in (deleted, kept):
        assert box.storage.move_aside(box.folder(recording_id), recording_id) is not None
    # The pass died after retiring `deleted`'s state, before retiring `kept`'s.
    candidate = box.retention.candidate(deleted)
    assert candidate is not None
    assert box.retention.retire([(candidate, "age", "test")], MOMENT, 60) == [100]
    box.retention.hold(kept, "lane-1", Hold(reason="case 7", by="lp", at=MOMENT))
    box.pruner(retention_days=0).run()
    assert not list((box.storage.root / ".trash").iterdir())
    assert kept_home.exists()
    assert box.kept(kept) == [True]


def test_a_hold_placed_while_deleting_keeps_the_recording(box: Box) -> None:
    recording_id = box.record(40 * DAY)
    candidate = box.retention.candidate(recording_id)
    assert candidate is not None
    box.retention.hold(recording_id, "lane-1", Hold(reason="just in time", by="lp", at=MOMENT))
    assert box.retention.retire([(candidate, "age", "test")], MOMENT, 60) == [None]
    assert box.kept(recording_id) == [True]


def test_a_pass_deletes_in_batches_and_takes_the_lock(box: Box) -> None:
    ids = [box.record(40 * DAY + number * timedelta(seconds=1)) for number in range(10)]
    with box.retention.exclusive(60) as mine:
        assert mine
        assert box.pruner().run().skipped == "another prune pass is running"
    report = box.pruner().run()  # batches of 3
    assert sorted(d.recording_id for d in report.deletions) == sorted(ids)
    assert box.client.zcard(keys.RETENTION) == 0
    assert box.retention.usage() == {"lane-1": 0}


def test_holds_and_sizes_show_in_the_state(box: Box) -> None:
    hold = Hold(reason="case 9", by="lp", at=MOMENT)
    recording_id = box.record(DAY, hold=hold, size=123)
    recording = box.recordings.get(recording_id)
    assert recording is not None
    assert recording.hold == hold
    assert recording.bytes == 123
    assert box.client.sismember(keys.held_of("lane-1"), recording_id)
    assert box.client.zscore(keys.RETENTION, recording_id) is None
    unknown = uuid.uuid4().hex
    assert box.retention.hold(unknown, "lane-1", hold) == "unknown"


def test_a_failed_recording_without_a_folder_ages_out_too(box: Box) -> None:
    now = box.now - 40 * DAY
    recording = Recording(
        recording_id=uuid.uuid4().hex, camera_id="lane-1", status=Status.QUEUED,
        frames_requested=1, event_time=now, received_at=now, updated_at=now,
        deadline=now + timedelta(minutes=10),
    )  # fmt: skip
    box.recordings.create(recording, None, 60)
    box.recordings.update(recording.recording_id, Status.FAILED, reason="no frames")
    report = box.pruner().run()
    assert [(d.recording_id, d.size) for d in report.deletions] == [(recording.recording_id, 0)]


def test_tombstones_expire(box: Box) -> None:
    recording_id = box.record(40 * DAY)
    box.pruner(tombstone_days=1).run()
    assert 0 < box.client.ttl(keys.gone(recording_id)) <= 86400


def test_a_pass_drops_shared_frames_no_pin_could_still_want(box: Box) -> None:
    """Links under .frames older than a pin go, and those whose recording is gone; the
    younger ones of a recording stay for overlapping windows."""
    folder = box.storage.root / ".frames" / "lane-1"
    folder.mkdir(parents=True)
    old, young = folder / "1-0.1000.fpng-1.png", folder / "2-0.2000.fpng-1.png"
    orphan = folder / "3-0.3000.fpng-1.png"
    for path in (old, young):  # a link has its file's age: one recording each
        os.link(box.folder(box.record(DAY)) / "frame_0001.png", path)
    orphan.write_bytes(b"png")
    os.utime(old, (0, 0))
    box.pruner().run()
    assert [path.name for path in folder.iterdir()] == [young.name]
