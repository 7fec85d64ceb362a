"""The recordings tree: atomic commits, no duplicates, nothing outside the root."""

from __future__ import annotations

import hashlib
import os
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from services.kernel.contracts import FrameRecord, Manifest, Status, from_us
from services.stores.storage import Storage, StorageError

DAY = date(2026, 11, 26)
RECORDING = "0123456789abcdef0123456789abcdef"


def manifest(recording_id: str = RECORDING) -> Manifest:
    """A minimal manifest."""
    now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
    return Manifest(
        recording_id=recording_id, camera_id="lane-1", transaction_id=None, event_time=now,
        event_time_source="received", event_time_sent=None, received_at=now, written_at=now,
        status=Status.COMPLETE, reason=None, frames_requested=1, frames_saved=1,
        frames_before=1, frames_after=0, encoder="fpng", frames=[], metadata={},
    )  # fmt: skip


def test_a_commit_moves_the_whole_recording_into_place(tmp_path: Path) -> None:
    """After commit the folder has every file; before it, the final path does not exist."""
    storage = Storage(tmp_path)
    final = storage.path_of("lane-1", DAY, RECORDING)
    with storage.staging(RECORDING) as staged:
        staged.write("frame_0001.png", b"png")
        assert not final.exists()
        assert storage.commit(staged, manifest(), final)
    assert sorted(os.listdir(final)) == ["frame_0001.png", "metadata.json"]
    assert storage.read_manifest(final) == manifest()
    assert list((tmp_path / ".staging").iterdir()) == []


def test_a_second_commit_of_the_same_recording_keeps_the_first(tmp_path: Path) -> None:
    """Two workers racing on one recording leave one folder, the first one's."""
    storage = Storage(tmp_path)
    final = storage.path_of("lane-1", DAY, RECORDING)
    for content in (b"first", b"second"):
        with storage.staging(RECORDING) as staged:
            staged.write("frame_0001.png", content)
            storage.commit(staged, manifest(), final)
    assert (final / "frame_0001.png").read_bytes() == b"first"
    assert list((tmp_path / ".staging").iterdir()) == []


@pytest.mark.parametrize(
    ("camera", "recording"),
    [("../etc", RECORDING), ("lane-1", "../../" + RECORDING[6:]), ("lane/1", RECORDING),
     ("lane-1", RECORDING.upper()), ("", RECORDING)],
)  # fmt: skip
def test_unsafe_ids_never_become_paths(tmp_path: Path, camera: str, recording: str) -> None:
    """IDs that could leave the root are refused before any path is built."""
    with pytest.raises(StorageError, match="unsafe"):
        Storage(tmp_path).path_of(camera, DAY, recording)


def test_a_planted_symlink_cannot_lead_outside_the_root(tmp_path: Path) -> None:
    """A camera folder replaced by a symlink elsewhere makes the commit fail, writing nothing."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "lane-1").symlink_to(outside)
    storage = Storage(root)
    final = storage.path_of("lane-1", DAY, RECORDING)
    with storage.staging(RECORDING) as staged, pytest.raises(StorageError, match="outside"):
        storage.commit(staged, manifest(), final)
    assert list(outside.rglob("*.json")) == []


def test_staging_left_by_a_dead_worker_is_cleaned(tmp_path: Path) -> None:
    """Old staging folders are removed at worker start; fresh ones are left alone."""
    storage = Storage(tmp_path)
    old = tmp_path / ".staging" / "old"
    old.mkdir(parents=True)
    os.utime(old, (0, 0))
    (tmp_path / ".staging" / "fresh").mkdir()
    assert storage.clean_staging(older_than=60) == 1
    assert [p.name for p in (tmp_path / ".staging").iterdir()] == ["fresh"]


def test_recordings_are_private_to_their_owner_and_group(tmp_path: Path) -> None:
    """Files 0640, folders 0750 whatever the umask, in SCO_RECORDINGS_GROUP when set."""
    group = str(os.getgid())
    storage = Storage(tmp_path, group)
    final = storage.path_of("lane-1", DAY, RECORDING)
    previous = os.umask(0)  # the most permissive umask must not widen them
    try:
        with storage.staging(RECORDING) as staged:
            staged.write("frame_0001.png", b"png")
            assert storage.commit(staged, manifest(), final)
    finally:
        os.umask(previous)
    for path in (final / "frame_0001.png", final / "metadata.json"):
        assert path.stat().st_mode & 0o777 == 0o640, path
        assert path.stat().st_gid == int(group)
    for folder in (final, final.parent, final.parent.parent, tmp_path / ".staging"):
        assert folder.stat().st_mode & 0o777 == 0o750, folder
    with pytest.raises(StorageError, match="SCO_RECORDINGS_GROUP"):
        Storage(tmp_path, "no-such-group-here")


def shared_frame(storage: Storage, name: str = "frame_0001.png") -> tuple[FrameRecord, Path]:
    """A frame written by one job and offered to others; its entry and staging folder."""
    png = b"\x89PNG a frame"
    record = FrameRecord(
        file=name, source_index=7, sequence=7, captured_at=from_us(280_000),
        stream_id="1800000000280-0", sha256=hashlib.sha256(png).hexdigest(), width=2, height=2,
    )  # fmt: skip
    with storage.staging(RECORDING) as staged:
        staged.write(name, png)
        storage.shared_frames("fpng-1").offer("lane-1", staged, record)
    return record, staged.path


def test_a_shared_frame_is_taken_only_while_it_hashes_as_written(tmp_path: Path) -> None:
    """Another job links the PNG (no copy) and gets its SHA-256; a PNG changed since, or
    one of another encoding or capture time, is not taken, and nothing is left linked."""
    storage = Storage(tmp_path)
    record, _ = shared_frame(storage)
    shared = storage.shared_frames("fpng-1")
    with storage.staging("b" * 32) as staged:
        assert shared.take("lane-1", record.stream_id, 280_000, staged, "f.png") == record.sha256
        assert (staged.path / "f.png").stat().st_nlink == 2
        other = storage.shared_frames("cv2-1")
        assert other.take("lane-1", record.stream_id, 280_000, staged, "g.png") is None
        assert shared.take("lane-1", record.stream_id, 281_000, staged, "g.png") is None
        (staged.path / "f.png").write_bytes(b"changed")  # the one inode both names share
        assert shared.take("lane-1", record.stream_id, 280_000, staged, "g.png") is None
        assert sorted(path.name for path in staged.path.iterdir()) == ["f.png"]


def test_taking_into_a_folder_another_attempt_took_fails(tmp_path: Path) -> None:
    """A superseded attempt must stop, not encode on into a folder that is gone."""
    storage = Storage(tmp_path)
    record, _ = shared_frame(storage)
    with storage.staging("b" * 32) as staged:
        os.rename(staged.path, tmp_path / "adopted")
        with pytest.raises(FileNotFoundError):
            storage.shared_frames("fpng-1").take(
                "lane-1", record.stream_id, 280_000, staged, "f.png"
            )


def test_shared_frames_go_once_no_job_can_want_them(tmp_path: Path) -> None:
    """Older than the given age: unlinked (the recordings' own files stay); newer: kept,
    unless no folder holds the frame any more (its bytes would stay on the disk for it)."""
    storage = Storage(tmp_path)
    _, staging = shared_frame(storage)  # its job failed: the staging folder is gone
    folder = tmp_path / ".frames" / "lane-1"
    (png,) = folder.glob("*.png")
    assert not staging.exists()
    assert storage.prune_shared(older_than=60) == 1
    assert [path.suffix for path in folder.iterdir()] == [".sha256"]
    png.unlink(missing_ok=True)
    for entry in folder.iterdir():
        entry.unlink()
    with storage.staging(RECORDING) as staged:  # a frame a live folder still holds
        staged.write("frame_0001.png", b"png")
        record = FrameRecord(
            file="frame_0001.png", source_index=1, sequence=1,
            captured_at=from_us(1), stream_id="1-0",
            sha256=hashlib.sha256(b"png").hexdigest(), width=1, height=1,
        )  # fmt: skip
        storage.shared_frames("fpng-1").offer("lane-1", staged, record)
        assert len(list(folder.iterdir())) == 2  # the PNG and its SHA-256
        assert storage.prune_shared(older_than=60) == 0
        for entry in folder.iterdir():
            os.utime(entry, (0, 0), follow_symlinks=False)
        assert storage.prune_shared(older_than=60) == 2
        assert list(folder.iterdir()) == []
