"""Retention: one prune pass deletes what the rules say, oldest first, never a held recording.

The rules, in the order a pass applies them:
- age: a camera's recordings older than its days (SCO_RETENTION_DAYS, or its override);
- camera-size: a camera over its own cap (its override's max_bytes);
- size: all recordings over SCO_RETENTION_MAX_BYTES;
- free-space: the recordings filesystem under SCO_MIN_FREE_BYTES free, across cameras.

Only final recordings not on hold are candidates (a retention index holds exactly those), and
only once past their job's deadline, when no worker can still be writing them. A folder is
renamed into the trash first, then its state deleted (a tombstone stays to answer 410), then
the folder removed: a recording put on hold in between is renamed back, and a pass that dies
half-way leaves only the trash, which the next pass finishes.

A pass reads and deletes in batches of SCO_PRUNE_BATCH, each one pipeline of small scripts,
so pruning a hundred thousand recordings never holds Redis for long.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import humanize

from services.kernel import keys
from services.kernel.contracts import DiskStatus, to_us, utcnow
from services.kernel.settings import Settings
from services.stores.retention import Candidate, RetentionStore
from services.stores.storage import Storage

log = logging.getLogger(__name__)

LOCK_SECONDS = 600


class DiskUsage(NamedTuple):
    """shutil.disk_usage's answer."""

    total: int
    used: int
    free: int


@dataclass(frozen=True)
class Deletion:
    """One recording a pass deleted (or, dry, would delete), and by which rule."""

    recording_id: str
    camera_id: str
    event_time: datetime
    size: int
    rule: str


@dataclass
class PruneReport:
    """What one pass did: its deletions, and the disk it left."""

    dry_run: bool
    deletions: list[Deletion] = field(default_factory=list)
    disk: DiskStatus | None = None
    skipped: str | None = None  # why the pass did nothing (another pass held the lock)

    @property
    def freed(self) -> int:
        """Bytes deleted (or, dry, that would be)."""
        return sum(deletion.size for deletion in self.deletions)


class Pruner:
    """Runs prune passes over one recordings root and its state."""

    def __init__(
        self,
        settings: Settings,
        store: RetentionStore,
        storage: Storage,
        *,
        clock: Callable[[], datetime] = utcnow,
        disk_usage: Callable[[str], DiskUsage] = lambda path: DiskUsage(*shutil.disk_usage(path)),
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.clock = clock
        self.disk_usage = disk_usage

    def run(self, *, dry_run: bool = False) -> PruneReport:
        """One pass; a dry one deletes nothing and reports what a real one would delete."""
        if dry_run:
            return _Pass(self, dry_run=True).run()
        with self.store.exclusive(LOCK_SECONDS) as mine:
            if not mine:
                return PruneReport(dry_run=False, skipped="another prune pass is running")
            self._finish_trash()
            # A shared frame outlives every job that may still want it when it outlives a pin.
            self.storage.prune_shared(older_than=self.settings.pin_ttl)
            return _Pass(self, dry_run=False).run()

    def _finish_trash(self) -> None:
        """Folders a dead pass moved aside: deleted if their state went, else put back."""
        for recording_id, aside in self.storage.trash():
            if self.store.exists(recording_id):
                found = self._home_of(recording_id)
                if found is not None and not found.exists():
                    log.warning("putting back %s: its deletion did not finish", recording_id)
                    self.storage.put_back(aside, found)
                    continue
            shutil.rmtree(aside, ignore_errors=True)

    def _home_of(self, recording_id: str) -> Path | None:
        found = self.store.candidate(recording_id)
        if found is None:
            return None
        return self.storage.path_of(found.camera_id, found.event_time.date(), recording_id)


class _Pass:
    """The state of one pass: what it deleted so far, by camera, and the disk."""

    def __init__(self, pruner: Pruner, *, dry_run: bool) -> None:
        self.pruner = pruner
        self.settings = pruner.settings
        self.store = pruner.store
        self.now = pruner.clock()
        self.report = PruneReport(dry_run=dry_run)
        self.planned: set[str] = set()

    def run(self) -> PruneReport:
        settings = self.settings
        usage = self.store.usage()
        cameras = sorted({*usage, *settings.camera_ids})
        for camera in cameras:
            days = settings.retention_days_of(camera)
            if days:
                cutoff = self.now - timedelta(days=days)
                source = "SCO_CAMERA_RETENTION" if camera in settings.camera_retention else (
                    "SCO_RETENTION_DAYS"
                )  # fmt: skip
                self._apply(
                    "age", keys.retention_of(camera), f"older than {days:g} days ({source})",
                    need=None, max_ms=to_us(cutoff) // 1000,
                )  # fmt: skip
        for camera in cameras:
            cap = settings.retention_max_bytes_of(camera)
            if cap:
                self._apply(
                    "camera-size", keys.retention_of(camera),
                    f"camera {camera} was over its cap of {_size(cap)} (SCO_CAMERA_RETENTION)",
                    need=self._excess(usage.get(camera, 0), cap, camera),
                )  # fmt: skip
        if settings.retention_max_bytes:
            cap = settings.retention_max_bytes
            self._apply(
                "size", keys.RETENTION,
                f"the recordings were over SCO_RETENTION_MAX_BYTES ({_size(cap)})",
                need=self._excess(sum(usage.values()), cap, None),
            )  # fmt: skip
        floor = settings.min_free_bytes
        if floor:
            self._apply(
                "free-space", keys.RETENTION,
                f"the recordings disk had less than SCO_MIN_FREE_BYTES ({_size(floor)}) free",
                need=lambda: floor - self._free(),
            )  # fmt: skip
        self.report.disk = self._disk_status()
        if not self.report.dry_run:
            ttl = max(60, round(self.settings.prune_interval * 3))
            self.store.write_disk(self.report.disk, ttl)
        return self.report

    def _excess(self, size: int, cap: int, camera: str | None) -> Callable[[], int]:
        """Bytes a camera's (or, for None, all) recordings are over a cap, as deletions go."""
        return lambda: size - self._freed(camera) - cap

    def _apply(
        self, rule: str, index: str, reason: str, *, need: Callable[[], int] | None,
        max_ms: int | None = None,
    ) -> None:  # fmt: skip
        """Delete from one index, oldest first, while `need` (bytes still to free) is
        positive, or every entry up to `max_ms` when there is no need to meet."""
        start, batch = 0, self.settings.prune_batch
        while need is None or need() > 0:
            read, candidates = self.store.oldest(index, start, batch, max_ms)
            chosen, stop = self._choose(candidates, need)
            deleted = self._delete(chosen, rule, reason)
            # Deleted entries left the index; the rest were read and stay before the next.
            start += read - (0 if self.report.dry_run else deleted)
            if stop or read < batch:
                return

    def _choose(
        self, candidates: list[Candidate], need: Callable[[], int] | None
    ) -> tuple[list[Candidate], bool]:
        """The candidates to delete now, and whether the rule has nothing more to do."""
        chosen: list[Candidate] = []
        owed = None if need is None else need()
        for candidate in candidates:
            if candidate.recording_id in self.planned or candidate.held:
                continue  # planned by an earlier rule of a dry pass; held since it was listed
            if candidate.deadline is not None and candidate.deadline > self.now:
                # A worker may still be writing it; those after it are younger still.
                return chosen, True
            chosen.append(candidate)
            if owed is not None:
                owed -= candidate.size
                if owed <= 0:
                    return chosen, True
        return chosen, False

    def _delete(self, chosen: list[Candidate], rule: str, reason: str) -> int:
        """Delete (or, dry, plan) a batch; how many left the index."""
        if self.report.dry_run:
            for candidate in chosen:
                self._count(candidate, rule, candidate.size)
            return 0
        storage = self.pruner.storage
        homes = [
            storage.path_of(found.camera_id, found.event_time.date(), found.recording_id)
            for found in chosen
        ]
        aside = [
            storage.move_aside(home, candidate.recording_id)
            for candidate, home in zip(chosen, homes, strict=True)
        ]
        doomed = [(candidate, rule, reason) for candidate in chosen]
        results = self.store.retire(doomed, self.now, round(self.settings.tombstone_days * 86400))
        deleted = 0
        for candidate, home, moved, size in zip(chosen, homes, aside, results, strict=True):
            if size is None:  # put on hold (or changed) since it was read: it stays
                if moved is not None:
                    storage.put_back(moved, home)
                continue
            if moved is not None:
                storage.remove(moved, home.parent, self.now.date())
            self._count(candidate, rule, size)
            deleted += 1
        if deleted:
            log.info("retention (%s) deleted %d recordings", rule, deleted)
        return deleted

    def _count(self, candidate: Candidate, rule: str, size: int) -> None:
        self.planned.add(candidate.recording_id)
        self.report.deletions.append(
            Deletion(candidate.recording_id, candidate.camera_id, candidate.event_time, size, rule)
        )

    def _freed(self, camera: str | None) -> int:
        return sum(
            deletion.size
            for deletion in self.report.deletions
            if camera is None or deletion.camera_id == camera
        )

    def _free(self) -> int:
        """Free bytes now; a dry pass counts what it would have freed."""
        return self._free_of(self.pruner.disk_usage(str(self.pruner.storage.root)))

    def _free_of(self, usage: DiskUsage) -> int:
        return usage.free + self._freed(None) if self.report.dry_run else usage.free

    def _disk_status(self) -> DiskStatus:
        usage = self.pruner.disk_usage(str(self.pruner.storage.root))
        floor = self.settings.min_free_bytes
        free = self._free_of(usage)
        full = free < floor
        reason = (
            f"the recordings disk has {_size(free)} free, under SCO_MIN_FREE_BYTES "
            f"({_size(floor)}), and every recording left is on hold or too young to delete"
            if full
            else None
        )
        return DiskStatus(
            free_bytes=free, total_bytes=usage.total, min_free_bytes=floor, full=full,
            reason=reason, checked_at=self.now,
        )  # fmt: skip


def _size(count: int) -> str:
    """Bytes for people: 1.5 GB, 41.0 MB."""
    return humanize.naturalsize(count)
