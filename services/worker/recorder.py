"""Turns a job into a recording: the pinned window's frames as PNGs plus metadata.json."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from services.kernel.backoff import compute_backoff
from services.kernel.contracts import (
    FrameRecord,
    Manifest,
    RecordingJob,
    Status,
    from_us,
    to_us,
    utcnow,
)
from services.kernel.framecodec import Frame
from services.kernel.outages import TRANSIENT
from services.kernel.signing import Signer
from services.stores.framebuffer import FrameBuffer, Window
from services.stores.recordings import RecordingStore
from services.stores.storage import (
    THUMBNAIL,
    SharedFrames,
    StagedRecording,
    Storage,
    StorageFullError,
    folder_size,
    full_disk_as_error,
)
from services.worker import journal
from services.worker.encoder import Encoder, read_png, thumbnail
from services.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

POLL_SECONDS = 0.005
WRITES_IN_FLIGHT = 3
WRITERS = 2
STATE_ATTEMPTS = 7  # waits 0.5 + 1 + 2 + 4 + 8 + 8 s between them: about 24 s of outage
OWNER_MARGIN_MS = 60_000  # the pin owner's token outlives the pin by this much
T = TypeVar("T")


class SupersededError(Exception):
    """A later attempt at the same job (its worker taken for dead) claimed its pin or adopted
    this attempt's staging folder; that attempt writes the recording, this one must not mark
    it failed."""


# Errors after which another attempt goes on with the job (tried again, or taken over): the
# staging folder stays for it to adopt, as the frames journaled there may be gone from the
# frame store. A superseded attempt must not remove it, even before the new one renamed it.
ADOPTED_LATER = (StorageFullError, SupersededError, *TRANSIENT)


@dataclass(frozen=True)
class Outcome:
    """How a job ended."""

    status: Status
    reason: str | None
    frames_saved: int
    path: Path


@dataclass
class Recorder:
    """Everything a job needs, wired once per worker process."""

    buffer_of: Callable[[str], FrameBuffer]
    store: RecordingStore
    storage: Storage
    encode: Encoder
    encoder_name: str
    settle_timeout: float
    page_bytes: int
    signer: Callable[[], Signer] | None = None  # the box's key, loaded (or made) when needed
    shared: SharedFrames | None = None  # frames other jobs wrote, for windows that overlap
    max_deliveries: int = 3
    run_seconds: float = 306.0
    clock: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], None] = field(default=time.sleep)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)

    def record(self, job: RecordingJob, retries: int = 0) -> Outcome:
        """Write the recording for a job once; a redelivered job finds it and only reports it.

        `retries` is how many times the job was retried on purpose (transient errors, a full
        disk): deliveries beyond those were runs lost with their worker.
        """
        started = self.clock()
        buffer = self.buffer_of(job.camera_id)
        final = self.storage.path_of(job.camera_id, from_us(job.event_us).date(), job.recording_id)
        existing = self.storage.read_manifest(final)
        if existing is not None:
            log.info("recording %s was already written", job.recording_id)
            outcome = Outcome(existing.status, existing.reason, existing.frames_saved, final)
        else:
            deadline = from_us(round(self.clock() * 1e6)) + timedelta(seconds=self.run_seconds)
            begun = self._outlasting_outages(
                lambda: self.store.start(
                    job.recording_id,
                    retries=retries,
                    max_deliveries=self.max_deliveries,
                    deadline=deadline,
                    camera_id=job.camera_id,
                )
            )
            if begun.status is not None and begun.status.is_final:
                # Settled already: by its deadline, or its worker died on it too often.
                log.warning("recording %s is already %s; not recording it", job.recording_id,
                            begun.status.value)  # fmt: skip
                buffer.release(job.pin_member)
                return Outcome(begun.status, None, 0, final)
            pin_held = buffer.holds(job.pin_member)
            self._wait_for_frames(buffer, job)
            outcome = self._write(buffer, job, final, pin_held)
        self._outlasting_outages(
            lambda: self.store.update(
                job.recording_id,
                outcome.status,
                reason=outcome.reason,
                frames_saved=outcome.frames_saved,
                path=str(outcome.path),
                size=folder_size(outcome.path),
                camera_id=job.camera_id,
            )
        )
        buffer.release(job.pin_member)
        self._show_hold(job.recording_id, outcome.path)
        finished = self.clock()
        self.metrics.recordings.labels(outcome.status.value).inc()
        self.metrics.job_seconds.observe(finished - started)
        self.metrics.event_to_final_seconds.observe(finished - job.received_at.timestamp())
        return outcome

    def _outlasting_outages(self, call: Callable[[], T]) -> T:
        """A state-store call, tried again through an outage of up to about half a minute.

        The state store is also the broker: while it is down a retry cannot even be queued,
        and a recording already written must not be recorded again just to store its status.
        """
        for attempt in itertools.count():
            try:
                return call()
            except TRANSIENT:
                if attempt >= STATE_ATTEMPTS - 1:
                    raise
                delay = compute_backoff(attempt, base=0.5, cap=8.0)
                log.warning("state store unavailable; trying again in %.1f s", delay)
                self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _show_hold(self, recording_id: str, path: Path) -> None:
        """A hold placed while the job ran is in the state but not yet in metadata.json."""
        recording = self._outlasting_outages(lambda: self.store.get(recording_id))
        if recording is not None:
            self.storage.write_hold(path, recording.hold)

    def abandon(self, job: RecordingJob) -> None:
        """Release a failed job's pin now rather than when it expires."""
        self.buffer_of(job.camera_id).release(job.pin_member)

    def _wait_for_frames(self, buffer: FrameBuffer, job: RecordingJob) -> None:
        """Wait until the capture has passed the moment (and the frames after it, if asked).

        A frame captured just before the moment may still be on its way into Redis when the
        job starts; once a newer frame is indexed, every frame up to the moment is there.
        Gives up when no new frame has arrived for `settle_timeout` seconds.
        """
        last_newest, last_progress = buffer.newest_us(), self.clock()
        while True:
            newest = buffer.newest_us()
            if _has_passed(newest, buffer, job):
                return
            if newest != last_newest:
                last_newest, last_progress = newest, self.clock()
            elif self.clock() - last_progress > self.settle_timeout:
                log.warning(
                    "camera %s sent no frame for %.1f s", job.camera_id, self.settle_timeout
                )
                return
            self.sleep(POLL_SECONDS)

    def _write(
        self, buffer: FrameBuffer, job: RecordingJob, final: Path, pin_held: bool
    ) -> Outcome:
        # This attempt claims the pin before it adopts an earlier attempt's folder: from
        # then on only it moves the pin, so nothing the adopted journal lacks is released.
        token = uuid.uuid4().hex[:8]
        lifetime_ms = job.pin_deadline_ms - round(self.clock() * 1000) + OWNER_MARGIN_MS
        buffer.claim(job.recording_id, token, lifetime_ms)
        with self.storage.staging(job.recording_id, token, keep_on=ADOPTED_LATER) as staged:
            try:
                progress = journal.resume(staged) if staged.adopted else None
                if progress is None:
                    window = buffer.window(job.event_us, job.frames_before, job.frames_after)
                    journal.begin(staged, window)
                    progress = journal.Progress(window, [])
                window = progress.window

                def release(captured_us: int) -> None:
                    """Free the frames before this one, written; stop if superseded."""
                    if not buffer.advance(job.pin_member, job.recording_id, token, captured_us):
                        raise SupersededError(
                            f"recording {job.recording_id}: another attempt claimed its pin"
                        )

                frames = self._save_frames(buffer, window, staged, progress.written, release)
                status, reason = judge(job, window, frames, self.clock(), pin_held)
                manifest = _manifest(job, frames, status, reason, self.encoder_name)
                if self.signer is not None:
                    with full_disk_as_error(self.storage.root):  # making the key writes too
                        signer = self.signer()
                    signature = signer.sign(manifest.model_dump_json())
                    manifest = manifest.model_copy(update={"signature": signature})
                committed = self.storage.commit(staged, manifest, final, scratch=(journal.JOURNAL,))
            except OSError as error:
                if isinstance(error, StorageFullError) or staged.path.exists():
                    raise
                raise SupersededError(
                    f"recording {job.recording_id}: another attempt took over its staging folder"
                ) from error
            if not committed:
                kept = self.storage.read_manifest(final) or manifest
                return Outcome(kept.status, kept.reason, kept.frames_saved, final)
        log.info(
            "recording %s %s: %d/%d frames%s",
            job.recording_id,
            status.value,
            len(frames),
            job.frames_before + job.frames_after,
            f" ({reason})" if reason else "",
        )
        return Outcome(status, reason, len(frames), final)

    def _save_frames(
        self,
        buffer: FrameBuffer,
        window: Window,
        staged: StagedRecording,
        written: list[FrameRecord],
        release: Callable[[int], None],
    ) -> list[FrameRecord]:
        """Encode and write the window's frames not `written` yet, in capture order, page by
        page, each journaled and then released from the frame store. A frame another job
        already wrote (its window overlaps this one) is linked from it instead of encoded.

        This thread only encodes and journals; the waits are on threads of their own.
        Encoding holds the GIL; hashing, writing and fsync release it. So WRITERS threads
        hash and write frames k, k+1 while this thread encodes frame k+2, with at most
        WRITES_IN_FLIGHT encoded frames waiting; this thread journals them in window order
        as they are done. A reader thread fetches frames a page ahead, and a releaser
        moves the pin after each journaled frame, in order. Each wait, on this thread, was
        a job's bottleneck in turn: the single writer (a fifth of a 720p job), then the
        reads (a fifth) and the releases (an eighth; profiled, docs/benchmarks.md).
        """
        records = list(written)
        remaining = window.ids[len(written) :]
        if not remaining:
            self._write_thumbnail(staged, records, None)
            return records
        wanted = set(remaining)
        camera_id = buffer.camera_id
        in_flight: deque[Future[FrameRecord]] = deque()
        with contextlib.ExitStack() as threads:
            writer = threads.enter_context(
                ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="png-writer")
            )
            released = threads.enter_context(_Releaser(release))
            frames = threads.enter_context(
                buffer.read_ahead(remaining[0], remaining[-1], self.page_bytes)
            )
            newest = None
            try:
                for frame in frames:
                    if frame.stream_id not in wanted:
                        continue
                    name = journal.frame_name(len(records) + len(in_flight) + 1)
                    in_flight.append(self._written(frame, name, staged, writer, camera_id))
                    _journal_written(in_flight, records, staged, released, WRITES_IN_FLIGHT)
                    newest = frame
                _journal_written(in_flight, records, staged, released, 0)
                released.wait()
            except BaseException:
                # Keep what is written for the next attempt: its frames may be gone by then.
                _journal_written(in_flight, records, staged, released, 0, quietly=True)
                raise
        self._write_thumbnail(staged, records, newest)
        return records

    def _written(
        self,
        frame: Frame,
        name: str,
        staged: StagedRecording,
        writer: ThreadPoolExecutor,
        camera_id: str,
    ) -> Future[FrameRecord]:
        """The frame's PNG in the staging folder as `name`, with its entry: linked from the
        job of an overlapping window if that job shared it, else encoded here and written
        by a writer thread."""
        record = _record_of(frame, name)
        shared = self.shared
        if shared and (
            digest := shared.take(camera_id, frame.stream_id, frame.captured_us, staged, name)
        ):
            self.metrics.frames.labels("shared").inc()
            linked: Future[FrameRecord] = Future()
            linked.set_result(record.model_copy(update={"sha256": digest}))
            return linked
        self.metrics.frames.labels("encoded").inc()
        png = self.encode(frame.picture())
        offer = functools.partial(shared.offer, camera_id, staged) if shared else None
        return writer.submit(_write_frame, staged, record, png, offer)

    def _write_thumbnail(
        self, staged: StagedRecording, records: list[FrameRecord], newest: Frame | None
    ) -> None:
        """The newest frame, small; read back from its PNG if an earlier attempt wrote it."""
        if newest is not None:
            staged.write(THUMBNAIL, thumbnail(newest.picture()))
        elif records:
            staged.write(THUMBNAIL, thumbnail(read_png(staged.path / records[-1].file)))


def _record_of(frame: Frame, name: str) -> FrameRecord:
    """A frame's manifest entry, its hash still to come."""
    return FrameRecord(
        file=name,
        source_index=frame.source_index,
        sequence=frame.sequence,
        captured_at=from_us(frame.captured_us),
        stream_id=frame.stream_id,
        sha256="",
        width=frame.width,
        height=frame.height,
    )


def _write_frame(
    staged: StagedRecording,
    record: FrameRecord,
    png: bytes,
    offer: Callable[[FrameRecord], None] | None,
) -> FrameRecord:
    """Write one PNG durably and `offer` it to overlapping windows; its entry, with its
    SHA-256."""
    record = record.model_copy(update={"sha256": hashlib.sha256(png).hexdigest()})
    staged.write(record.file, png)
    if offer is not None:
        offer(record)
    return record


class _Releaser:
    """Calls `release` on a thread of its own, in the order asked: the caller does not wait
    for each round trip. A release's error (the attempt was superseded) is raised by the
    caller's next `__call__`, or by `wait`; on exit, releases still queued run first."""

    def __init__(self, release: Callable[[int], None]) -> None:
        self._release = release
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-release")
        self._pending: deque[Future[None]] = deque()

    def __enter__(self) -> _Releaser:
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.shutdown(wait=True)

    def __call__(self, captured_us: int) -> None:
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()
        self._pending.append(self._thread.submit(self._release, captured_us))

    def wait(self) -> None:
        """Until every release asked for is done; raises the first one's error."""
        while self._pending:
            self._pending.popleft().result()


def _journal_written(
    in_flight: deque[Future[FrameRecord]],
    records: list[FrameRecord],
    staged: StagedRecording,
    release: Callable[[int], None],
    keep: int,
    *,
    quietly: bool = False,
) -> None:
    """Journal the leading frames whose PNGs are written, in window order, waiting until at
    most `keep` remain in flight; after each, release the frames before it (the frame
    itself stays pinned: the job's last frame until the job ends). `quietly`, after an
    error: stop at the first frame that cannot be, raising nothing."""
    while in_flight and (len(in_flight) > keep or in_flight[0].done()):
        try:
            record = in_flight.popleft().result()
            journal.note(staged, record)
            records.append(record)
            release(to_us(record.captured_at))
        except Exception:
            if not quietly:
                raise
            return


def _has_passed(newest: int | None, buffer: FrameBuffer, job: RecordingJob) -> bool:
    if newest is None or newest <= job.event_us:
        return False
    if job.frames_after == 0:
        return True
    return len(buffer.window(job.event_us, 0, job.frames_after).after) >= job.frames_after


def judge(
    job: RecordingJob,
    window: Window,
    frames: list[FrameRecord],
    now: float,
    pin_held: bool = True,
) -> tuple[Status, str | None]:
    """Complete when every frame asked for was saved; otherwise partial or failed, and why."""
    requested = job.frames_before + job.frames_after
    dropped = _dropped_within(frames)
    if len(frames) == requested and not dropped:
        return Status.COMPLETE, None
    reasons = []
    if dropped:
        reasons.append(
            f"{dropped} frames the capture read within the window could not be stored (the "
            "frame store was unavailable): the window reaches that much further back"
        )
    if len(window.before) < job.frames_before:
        reasons.append(_why_short(job, len(window.before), now, pin_held))
    if len(window.after) < job.frames_after:
        reasons.append(
            f"only {len(window.after)} of {job.frames_after} frames after the event arrived"
        )
    if len(frames) < len(window.ids):
        reasons.append(f"{len(window.ids) - len(frames)} frames were trimmed while being read")
    reason = "; ".join(reasons) or f"saved {len(frames)} of {requested} frames"
    status = Status.PARTIAL if frames else Status.FAILED
    return status, reason


def _dropped_within(frames: list[FrameRecord]) -> int:
    """Frames the capture counted between two saved ones but never got into the stream.

    A capture that restarts counts from zero again: a step down is a new capture, not a gap.
    """
    return sum(
        later.sequence - earlier.sequence - 1
        for earlier, later in itertools.pairwise(frames)
        if later.sequence > earlier.sequence + 1
    )


def _why_short(job: RecordingJob, found: int, now: float, pin_held: bool) -> str:
    if not pin_held and now * 1000 <= job.pin_deadline_ms:
        return (
            f"the frame store lost the pinned frames (restarted or flushed): {found} of "
            f"{job.frames_before} frames were still buffered"
        )
    # Fewer than N frames at or before the moment at receipt (a frame still on its way into
    # Redis may have been found since, so `found` can exceed the count pinned).
    if job.pinned_count < job.frames_before:
        if job.buffered_at_pin >= job.frames_before:
            return (
                f"the event is older than the buffer: only {found} of {job.frames_before} "
                "frames at or before it were still buffered"
            )
        return (
            f"only {found} of {job.frames_before} frames were captured at or before the event "
            "(the source had just started or was not running)"
        )
    if now * 1000 > job.pin_deadline_ms:
        waited = now - job.received_at.timestamp()
        return (
            f"the pin expired: the job ran {waited:.1f} s after the event, beyond its pin "
            "(SCO_PIN_SECONDS, by default SCO_MAX_DELAY + SCO_TASK_TIME_LIMIT + takeover); "
            f"{found} of {job.frames_before} frames were still buffered"
        )
    return (
        f"the buffer hit its hard cap (max_buffer_frames): {found} of {job.frames_before} "
        "frames were still buffered"
    )


def _manifest(
    job: RecordingJob,
    frames: list[FrameRecord],
    status: Status,
    reason: str | None,
    encoder: str,
) -> Manifest:
    return Manifest(
        recording_id=job.recording_id,
        camera_id=job.camera_id,
        event_id=job.event_id,
        lane_id=job.lane_id,
        transaction_id=job.transaction_id,
        event_time=from_us(job.event_us),
        event_time_source=job.event_time_source,
        event_time_sent=job.event_time_sent,
        received_at=job.received_at,
        written_at=utcnow(),
        status=status,
        reason=reason,
        frames_requested=job.frames_before + job.frames_after,
        frames_saved=len(frames),
        frames_before=job.frames_before,
        frames_after=job.frames_after,
        encoder=encoder,
        frames=frames,
        metadata=job.metadata,
        hold=job.hold,
    )
