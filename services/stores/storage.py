"""The recordings tree: the only code that writes it, and always atomically.

A recording is written in a staging folder on the same filesystem, every file fsynced, then
renamed into `{root}/{camera_id}/{YYYY-MM-DD}/{recording_id}/` in one step, so a reader sees
either nothing or the whole recording.
"""

from __future__ import annotations

import base64
import errno
import grp
import hashlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.kernel.contracts import (
    RECORDING_ID_PATTERN,
    FrameRecord,
    Hold,
    Manifest,
    Recording,
    to_us,
)
from services.kernel.settings import CAMERA_ID_PATTERN
from services.kernel.signing import SignatureError, check_signature

log = logging.getLogger(__name__)

MANIFEST = "metadata.json"
THUMBNAIL = "thumbnail.jpg"  # the newest frame, small, for lists
STAGING = ".staging"
TRASH = ".trash"  # folders being deleted: renamed here first, so none is seen half-deleted
SHARED = ".frames"  # each camera's frames written lately, for windows that overlap
_STREAM_ID = re.compile(r"^\d+-\d+$")
_TAG = re.compile(r"^[a-z0-9-]+$")
_CAMERA = re.compile(CAMERA_ID_PATTERN)
_RECORDING = re.compile(RECORDING_ID_PATTERN)


class StorageError(OSError):
    """Raised when a recording cannot be written; the message says why."""


class StorageFullError(StorageError):
    """The recordings filesystem is full; worth retrying once space is freed."""


FULL = {errno.ENOSPC, errno.EDQUOT}


@contextmanager
def full_disk_as_error(path: Path) -> Iterator[None]:
    """Turn 'no space left' into StorageFullError, so it reads as what it is."""
    try:
        yield
    except OSError as error:
        if error.errno in FULL:
            raise StorageFullError(f"storage full: cannot write {path}") from error
        raise


FILE_MODE, FOLDER_MODE = 0o640, 0o750  # images of customers: owner and group only


class StagedRecording:
    """A recording being written, invisible until committed; `adopted` when the folder is
    one an earlier attempt at the same recording left (see `Storage.staging`)."""

    def __init__(self, path: Path, gid: int = -1, *, adopted: bool = False) -> None:
        self.path = path
        self.gid = gid
        self.adopted = adopted

    def append(self, name: str, data: bytes) -> None:
        """Add to a file `write` made, by its path: once another attempt has adopted the
        folder (renamed it), this fails like every other write of this attempt. Not fsynced:
        it must outlive the process, which the page cache does; a machine that crashes takes
        the frame store, and so the frames still to write, with it."""
        with full_disk_as_error(self.path / name):
            descriptor = os.open(self.path / name, os.O_WRONLY | os.O_APPEND)
            try:
                _write_all(descriptor, data)
            finally:
                os.close(descriptor)

    def keep_only(self, names: set[str]) -> None:
        """Remove every file of the folder not named."""
        for entry in self.path.iterdir():
            if entry.name not in names:
                entry.unlink(missing_ok=True)

    def replace(self, name: str, data: bytes) -> None:
        """Write a file whole in place of the one there, in one rename."""
        temporary = f".{name}.{uuid.uuid4().hex[:8]}"
        self.write(temporary, data)
        os.replace(self.path / temporary, self.path / name)

    def write(self, name: str, data: bytes) -> None:
        """Write one file durably, readable by the owner and the recordings group only."""
        with full_disk_as_error(self.path / name):
            descriptor = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            try:
                os.fchmod(descriptor, FILE_MODE)  # whatever the umask
                if self.gid != -1:
                    os.fchown(descriptor, -1, self.gid)
                _write_all(descriptor, data)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


class SharedFrames:
    """Frames written lately, so that a window overlapping another's encodes each frame once.

    A job that has written a frame's PNG (fsynced) offers it: a hard link under
    `.frames/<camera>/`, named by the frame's stream ID, capture time and encoding, and its
    SHA-256 beside it, as the target of a symlink: a short one takes no block of the disk,
    where a file of 44 bytes takes 4 kB (on a small disk that was a sixth of the frames).
    A later job whose window holds the same frame links that PNG into its own folder
    instead of encoding it again, and keeps it only if it still hashes to what its writer
    wrote. A hard link costs no disk while the recording it came from exists;
    `Storage.prune_shared` drops links once no job can still need them. Best effort both
    ways: an offer or a take that fails is a miss, and the job encodes the frame itself.
    """

    def __init__(self, root: Path, tag: str, make_folder: Callable[[Path], None]) -> None:
        if not _TAG.match(tag):
            raise StorageError(f"unsafe encoding tag {tag!r}")
        self.root = root
        self.tag = tag
        self._make_folder = make_folder

    def _path(self, camera_id: str, stream_id: str, captured_us: int) -> Path:
        """The shared PNG's path; its SHA-256 is beside it, with the suffix `.sha256`."""
        if not _CAMERA.match(camera_id) or not _STREAM_ID.match(stream_id):
            raise StorageError(f"unsafe frame key {camera_id!r} {stream_id!r}")
        return self.root / camera_id / f"{stream_id}.{captured_us}.{self.tag}.png"

    def offer(self, camera_id: str, staged: StagedRecording, record: FrameRecord) -> None:
        """Share a frame this job has written (durably), as its manifest entry describes it."""
        path = self._path(camera_id, record.stream_id, to_us(record.captured_at))
        try:
            if not path.parent.is_dir():
                self._make_folder(path.parent)
            os.link(staged.path / record.file, path)
            os.symlink(_short(record.sha256), path.with_suffix(".sha256"))
        except FileExistsError:
            pass  # another job offered it first
        except OSError as error:  # a full disk, a folder taken over: nothing is shared
            log.debug("could not share frame %s: %s", record.stream_id, error)

    def take(
        self, camera_id: str, stream_id: str, captured_us: int, staged: StagedRecording, name: str
    ) -> str | None:
        """Link the frame into this job's folder as `name`, if another job offered it and it
        still hashes as written; its SHA-256, or None (then nothing was linked)."""
        path = self._path(camera_id, stream_id, captured_us)
        try:
            expected = os.readlink(path.with_suffix(".sha256"))
            os.link(path, staged.path / name)
        except OSError:  # not offered, pruned, or not ours to link (protected_hardlinks)
            if not staged.path.exists():
                raise  # another attempt took the folder: this one must stop
            return None
        digest = hashlib.sha256((staged.path / name).read_bytes()).hexdigest()
        if _short(digest) != expected:
            log.warning("shared frame %s no longer hashes as written; encoding it again", path)
            (staged.path / name).unlink()
            return None
        return digest


class Storage:
    """The recordings root."""

    def __init__(self, root: Path, group: str | None = None) -> None:
        self.root = root
        self.gid = -1 if group is None else _gid_of(group)

    def _private_folder(self, path: Path) -> None:
        """Make `path` (and its missing parents under the root) owner-and-group only."""
        missing = []
        folder = path
        while not folder.exists() and folder != self.root and self.root in folder.parents:
            missing.append(folder)
            folder = folder.parent
        path.mkdir(parents=True, exist_ok=True)
        for created in (path, *missing):
            with suppress(FileNotFoundError):  # removed meanwhile (an empty day's folder)
                os.chmod(created, FOLDER_MODE)
                if self.gid != -1:
                    os.chown(created, -1, self.gid)

    def path_of(self, camera_id: str, day: date, recording_id: str) -> Path:
        """Where a recording lives; IDs are checked so nothing can point outside the root."""
        if not _CAMERA.match(camera_id):
            raise StorageError(f"unsafe camera ID {camera_id!r}")
        if not _RECORDING.match(recording_id):
            raise StorageError(f"unsafe recording ID {recording_id!r}")
        return self.root / camera_id / day.isoformat() / recording_id

    def find(self, recording: Recording) -> tuple[Manifest, Path] | None:
        """A recording's committed folder and its manifest, if one was written."""
        path = self.path_of(
            recording.camera_id, recording.event_time.date(), recording.recording_id
        )
        manifest = self.read_manifest(path)
        return None if manifest is None else (manifest, path)

    def read_manifest(self, path: Path) -> Manifest | None:
        """The manifest of a committed recording, or None if there is none."""
        try:
            return Manifest.model_validate_json((path / MANIFEST).read_bytes())
        except FileNotFoundError:
            return None

    @contextmanager
    def staging(
        self,
        recording_id: str,
        token: str | None = None,
        keep_on: tuple[type[BaseException], ...] = (),
    ) -> Iterator[StagedRecording]:
        """This attempt's staging folder, named by its token; removed again unless it was
        committed, or the attempt wrote frames and ended with one of `keep_on` (it will be
        tried again, and those frames may be gone from the frame store).

        The folder an earlier attempt at the same recording left (its worker was killed, or
        it is to be tried again) is adopted: renamed to this attempt's name, so that the
        earlier attempt, if still alive, fails on its next write. Older leftovers go.
        """
        staging_root = self.root / STAGING
        path = staging_root / f"{recording_id}.{token or uuid.uuid4().hex[:8]}"
        adopted = False
        with full_disk_as_error(staging_root):
            self._private_folder(staging_root)
            leftovers = sorted(staging_root.glob(f"{recording_id}.*"), key=_mtime, reverse=True)
            for leftover in leftovers:
                if not adopted:
                    with suppress(FileNotFoundError):  # another attempt adopted it first
                        os.rename(leftover, path)
                        adopted = True
                        log.info("adopting %s, left by an earlier attempt", leftover.name)
                        continue
                log.info("removing %s, left by an earlier attempt", leftover.name)
                shutil.rmtree(leftover, ignore_errors=True)
            if not adopted:
                self._private_folder(path)
        try:
            yield StagedRecording(path, self.gid, adopted=adopted)
        except BaseException as error:
            if not (isinstance(error, keep_on) and any(path.glob("*.png"))):
                shutil.rmtree(path, ignore_errors=True)  # gone already if another took it
            raise
        shutil.rmtree(path, ignore_errors=True)  # gone already if committed

    def commit(
        self,
        staged: StagedRecording,
        manifest: Manifest,
        final: Path,
        scratch: tuple[str, ...] = (),
    ) -> bool:
        """Write the manifest and move the recording into place, then remove the `scratch`
        files only writing it needed; False if it already exists."""
        staged.write(MANIFEST, manifest.model_dump_json(indent=2).encode())
        _fsync_dir(staged.path)
        with full_disk_as_error(final.parent):
            self._private_folder(final.parent)
        self._check_inside_root(final.parent)
        try:
            os.rename(staged.path, final)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                log.info("recording %s already exists; keeping the first copy", final.name)
                return False
            raise
        _fsync_dir(final.parent)
        for name in scratch:  # after the rename: until then they are what a retry adopts
            (final / name).unlink(missing_ok=True)
        return True

    def shared_frames(self, tag: str) -> SharedFrames:
        """Frames written lately under this root, by jobs encoding as `tag` says."""
        return SharedFrames(self.root / SHARED, tag, self._private_folder)

    def prune_shared(self, older_than: float) -> int:
        """Drop shared frames written more than `older_than` seconds ago, and those no
        recording or staging folder holds any more (deleted, or its job failed): their
        link is all that keeps their bytes on the disk. How many files went."""
        shared = self.root / SHARED
        if not shared.is_dir():
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for camera in shared.iterdir():
            for entry in os.scandir(camera):
                with suppress(FileNotFoundError):
                    stat = entry.stat(follow_symlinks=False)
                    orphan = entry.name.endswith(".png") and stat.st_nlink == 1
                    if orphan or stat.st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def clean_staging(self, older_than: float) -> int:
        """Remove staging folders left by a worker that died; returns how many."""
        staging_root = self.root / STAGING
        if not staging_root.is_dir():
            return 0
        removed = 0
        cutoff = time.time() - older_than
        for leftover in staging_root.iterdir():
            if leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
                removed += 1
        return removed

    def write_hold(self, path: Path, hold: Hold | None) -> bool:
        """Show a recording's hold in its metadata.json (replaced in one rename); False if
        the recording has no folder or already shows it."""
        manifest = self.read_manifest(path)
        if manifest is None or manifest.hold == hold:
            return False
        updated = manifest.model_copy(update={"hold": hold})
        StagedRecording(path, self.gid).replace(
            MANIFEST, updated.model_dump_json(indent=2).encode()
        )
        _fsync_dir(path)
        return True

    def move_aside(self, path: Path, recording_id: str) -> Path | None:
        """Rename a recording's folder into the trash, where nobody looks for it; None if it
        has no folder."""
        if not path.exists():
            return None
        self._check_inside_root(path.parent)
        trash = self.root / TRASH
        self._private_folder(trash)
        aside = trash / f"{recording_id}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return None
        return aside

    def put_back(self, aside: Path, path: Path) -> None:
        """Undo move_aside: the recording was put on hold meanwhile."""
        os.rename(aside, path)

    def remove(self, aside: Path, day_folder: Path, today: date) -> None:
        """Delete a folder moved aside, and its day's folder once empty and in the past (a
        worker may still be committing into today's or yesterday's)."""
        shutil.rmtree(aside, ignore_errors=True)
        if (today - date.fromisoformat(day_folder.name)).days > 1:
            with suppress(OSError):  # not empty, or already gone
                day_folder.rmdir()

    def trash(self) -> list[tuple[str, Path]]:
        """Folders a pass moved aside and did not finish with (it died): (recording ID, path)."""
        trash = self.root / TRASH
        if not trash.is_dir():
            return []
        return [(entry.name.partition(".")[0], entry) for entry in trash.iterdir()]

    def _check_inside_root(self, folder: Path) -> None:
        """Refuse a folder that resolves outside the root, e.g. through a planted symlink."""
        if not folder.resolve().is_relative_to(self.root.resolve()):
            raise StorageError(f"{folder} resolves outside the recordings root")


def _short(sha256: str) -> str:
    """A SHA-256 in 43 characters, short enough for a symlink kept in its inode."""
    return base64.urlsafe_b64encode(bytes.fromhex(sha256)).decode().rstrip("=")


def folder_size(path: Path) -> int:
    """Bytes of the files in a recording's folder (0 if there is none)."""
    try:
        return sum(entry.stat().st_size for entry in path.iterdir() if entry.is_file())
    except FileNotFoundError:
        return 0


def _gid_of(group: str) -> int:
    """A group's ID by name or number; StorageError if this machine has no such group."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise StorageError(f"no group {group!r} on this machine (SCO_RECORDINGS_GROUP)") from None


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


SUMS = "SHA256SUMS"  # in a downloaded recording: every file's hash, as `sha256sum` writes it


def check_folder(path: Path, box_key: Ed25519PublicKey | None = None) -> tuple[Manifest, list[str]]:
    """A recording folder (written here, or downloaded and unpacked) checked: metadata.json
    is signed (by `box_key`, when given) and unchanged since; every frame it lists is there
    with its SHA-256; no PNG is unlisted; a SHA256SUMS file, if present, matches. The
    manifest, and each problem found."""
    try:
        raw = (path / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise StorageError(f"{path} has no {MANIFEST}: not a recording") from None
    manifest = Manifest.model_validate_json(raw)
    problems = []
    try:
        check_signature(raw, box_key)
    except SignatureError as error:
        problems.append(f"{MANIFEST}: {error}")
    listed = set()
    for frame in manifest.frames:
        listed.add(frame.file)
        try:
            digest = hashlib.sha256((path / frame.file).read_bytes()).hexdigest()
        except FileNotFoundError:
            problems.append(f"{frame.file}: missing")
            continue
        if digest != frame.sha256:
            problems.append(f"{frame.file}: SHA-256 {digest} differs from metadata.json's")
    problems.extend(
        f"{extra.name}: a frame metadata.json does not list"
        for extra in sorted(path.glob("*.png"))
        if extra.name not in listed
    )
    if (path / SUMS).is_file():
        for line in (path / SUMS).read_text().splitlines():
            expected, _, name = line.partition("  ")
            target = path / name
            if target.parent != path or not target.is_file():
                problems.append(f"{SUMS}: {name!r} is not a file of the recording")
            elif hashlib.sha256(target.read_bytes()).hexdigest() != expected:
                problems.append(f"{name}: does not match {SUMS}")
    return manifest, problems
