"""The capture loop: read frames, stamp them, push them raw into the camera's stream."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from services.capture.metrics import CaptureMetrics
from services.capture.source import FrameSource
from services.capture.spec import SourceError, SourceSpec
from services.kernel.backoff import compute_backoff
from services.kernel.contracts import CameraStatus, from_us, utcnow
from services.kernel.framecodec import UNSPECIFIED, PixelFormat, Pixels, picture_height
from services.kernel.outages import TRANSIENT
from services.kernel.redact import mask_credentials
from services.kernel.settings import Settings
from services.stores.cameras import CameraRegistry
from services.stores.framebuffer import FrameBuffer

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 10.0
# A session that delivered frames this long was healthy: the next outage starts the backoff over.
HEALTHY_SECONDS = MAX_BACKOFF_SECONDS


def reconnect_delay(failures: int) -> float:
    """Seconds before reopening a source that failed `failures` times in a row: 0.5 s to 10 s."""
    return compute_backoff(failures, base=0.5, cap=MAX_BACKOFF_SECONDS)


def frames_kept(settings: Settings, fps: float) -> int:
    """Frames the stream holds in steady state: N, plus the trusted event_time's age window."""
    if settings.trust_event_time:
        return settings.frames + math.ceil(fps * settings.max_event_age)
    return settings.frames


def buffer_cap(settings: Settings, fps: float) -> int:
    """The stream's hard cap: N frames plus what a pin may hold for max_delay seconds."""
    if settings.max_buffer_frames:
        return max(settings.max_buffer_frames, frames_kept(settings, fps))
    return (
        frames_kept(settings, fps) + settings.max_frames_after + math.ceil(fps * settings.max_delay)
    )


@dataclass
class LiveStamps:
    """When a live camera saw each frame: its position in the stream, put on this machine's
    clock by the smallest delay seen lately (the frame read soonest after it was taken).

    The position is the stream's own clock, so frames read late in a burst keep the times
    they were taken at. The offset is the least `now - position` over `window` seconds:
    the clocks' drift moves it, a slow read never does. A stamp is never later than the read.
    A position that goes back (the stream restarted) starts the estimate over.
    """

    window: float = 10.0
    _offsets: deque[tuple[float, float]] = field(default_factory=deque)
    _last_position: float = -math.inf

    def stamp(self, now: float, position: float | None) -> float:
        """The moment the camera saw the frame just read at `now`."""
        if position is None:
            return now
        if position < self._last_position:
            self._offsets.clear()
        self._last_position = position
        # A sliding minimum: an offset no smaller than a newer one can never be the least.
        offsets, offset = self._offsets, now - position
        while offsets and offsets[-1][1] >= offset:
            offsets.pop()
        offsets.append((now, offset))
        while offsets[0][0] < now - self.window:
            offsets.popleft()
        return min(now, offsets[0][1] + position)


@dataclass
class Counters:
    """What the heartbeat reports."""

    frames_read: int = 0
    late: int = 0
    dropped: int = 0
    lag: float = 0.0
    errors: int = 0
    last_error: str | None = None
    last_frame_us: int | None = None
    width: int = 0
    height: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def fps(self, now: float) -> float:
        """Frames per second over the last two seconds."""
        window = [moment for moment in self.recent if now - moment <= 2.0]  # noqa: PLR2004
        return len(window) / 2.0 if window else 0.0

    def fail(self, message: str) -> None:
        """Count an error and remember it for the heartbeat."""
        self.errors += 1
        self.last_error = mask_credentials(message)


READ_AHEAD = 4  # frames read but not yet pushed, at most (~130 ms at 30 fps)
STOP_READER_SECONDS = 5.0
Frame = tuple[Pixels, int, float]  # pixels, source index, when the camera saw it


class Reader:
    """The capture's reading half: reads the source, paces a file, stamps each frame, and
    hands it to the pushing half through a short queue."""

    def __init__(
        self, capture: Capture, source: FrameSource, period: float, stop: threading.Event
    ) -> None:
        self.capture, self.source, self.period, self.stop = capture, source, period, stop
        self.frames: queue.Queue[Frame | None] = queue.Queue(maxsize=READ_AHEAD)
        self.done = threading.Event()  # the pushing half has stopped taking frames
        self.failed = False
        self.error: Exception | None = None

    def run(self) -> None:
        """Read until stopped or the source fails; then say so with None."""
        capture = self.capture
        started, emitted = capture.clock(), 0
        live = LiveStamps()
        try:
            while not self.stop.is_set() and not self.done.is_set():
                got = self.source.read()
                if got is None:
                    capture.counters.fail(f"source {capture.spec.shown!r}: read failed")
                    self.failed = True
                    return
                pixels, index = got
                if capture.spec.is_live:
                    seen = live.stamp(capture.clock(), self.source.position())
                else:
                    started, emitted, seen = capture.pace(started, emitted, self.period, self.stop)
                self._hand_over((pixels, index, seen))
        except Exception as error:  # re-raised by the pushing half
            self.error = error
        finally:
            self._hand_over(None)

    def _hand_over(self, frame: Frame | None) -> None:
        """Queue a frame; a full queue waits for the pushing half (a frame store slower than
        the camera for longer than the queue holds makes the reader late, and counted)."""
        while not self.done.is_set():
            try:
                self.frames.put(frame, timeout=0.5)
                return
            except queue.Full:
                continue


class Capture:
    """Runs one source into one camera's frame buffer until stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        spec: SourceSpec,
        buffer: FrameBuffer,
        registry: CameraRegistry,
        opener: Callable[[SourceSpec], FrameSource],
        clock: Callable[[], float] = time.time,
        metrics: CaptureMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.buffer = buffer
        self.registry = registry
        self.opener = opener
        self.clock = clock
        self.counters = Counters()
        self.metrics = (metrics or CaptureMetrics()).of(buffer.camera_id)
        self.state = "starting"
        self._next_heartbeat = 0.0
        self._keep = settings.frames
        self._cap = buffer_cap(settings, 1.0)
        self._pixel_format: PixelFormat = "bgr"
        self._colour = UNSPECIFIED

    def run(self, stop: threading.Event) -> None:
        """Capture until `stop` is set; live sources are reopened with backoff.

        The backoff grows while sessions keep failing fast, and starts over after a session
        that ran for HEALTHY_SECONDS: a camera lost once a day reconnects in half a second.
        """
        failures = 0
        while not stop.is_set():
            source = self._open(stop)
            if source is None:
                break
            opened = self.clock()
            try:
                self._pump(source, stop)
            finally:
                source.close()
            if stop.is_set():
                break
            if self.clock() - opened >= HEALTHY_SECONDS:
                failures = 0
            delay = reconnect_delay(failures)
            failures += 1
            self.state = "reconnecting"
            self._heartbeat(force=True)
            log.warning("source %s lost; reconnecting in %.1f s", self.spec.shown, delay)
            stop.wait(delay)
        self.state = "stopped"
        self._heartbeat(force=True)

    def _open(self, stop: threading.Event) -> FrameSource | None:
        failures = 0
        while not stop.is_set():
            try:
                source = self.opener(self.spec)
            except SourceError as error:
                if not self.spec.is_live:
                    self.state = "failed"
                    self.counters.fail(str(error))
                    self._heartbeat(force=True)
                    raise
                self.counters.fail(str(error))
                self.state = "reconnecting"
                self._heartbeat(force=True)
                delay = reconnect_delay(failures)
                failures += 1
                log.warning("%s; retrying in %.1f s", error, delay)
                stop.wait(delay)
                continue
            self.state = "running"
            log.info("capturing %s at %.2f fps", self.spec.shown, self.settings.fps or source.fps)
            return source
        return None

    def _pump(self, source: FrameSource, stop: threading.Event) -> bool:
        """Move frames until the source fails (False) or we are stopped (True).

        A reader thread reads, paces and stamps; this thread pushes. Between them a queue of
        READ_AHEAD frames absorbs the frame store's pauses (a worker paging out a window
        holds Redis for a moment), so a slow push delays the push, not the next read.
        """
        fps = self.settings.fps or source.fps  # a store file may know the camera better
        self._pixel_format = source.pixel_format  # one per opening (see PyAVSource)
        self._colour = source.colour
        self._cap = buffer_cap(self.settings, fps)
        self._keep = frames_kept(self.settings, fps)
        reader = Reader(self, source, 1.0 / fps, stop)
        thread = threading.Thread(target=reader.run, name="capture-reader", daemon=True)
        thread.start()
        try:
            while True:
                try:
                    frame = reader.frames.get(timeout=HEARTBEAT_SECONDS)
                except queue.Empty:  # a live source that stalls still gets its heartbeat
                    self._heartbeat()
                    continue
                if frame is None:
                    break
                self._push(*frame)
                self._heartbeat()
        finally:
            reader.done.set()
            thread.join(timeout=STOP_READER_SECONDS)
        if reader.error is not None:
            raise reader.error
        return not reader.failed

    def pace(
        self, started: float, emitted: int, period: float, stop: threading.Event
    ) -> tuple[float, int, float]:
        """Hold a file's frame until its moment at the native rate; count it late if missed.
        Returns the schedule and the frame's due time: when a camera would have seen it."""
        due = started + emitted * period
        now = self.clock()
        if now < due:
            stop.wait(due - now)
        elif now - due > period:
            self.counters.late += 1
            self.metrics.late.inc()
            if now - due > 1.0:
                # Far behind (a stall): start the schedule over rather than burst to catch up.
                return now, 1, now
        return started, emitted + 1, due

    def _push(self, pixels: Pixels, index: int, seen: float) -> None:
        """Push a frame stamped with when it was seen, not when it got here: a capture that
        falls behind must not give an older picture a later time than its successor's."""
        now = self.clock()
        counters = self.counters
        # Capture times must grow even if the wall clock steps back: the window depends on it.
        captured_us = max(int(seen * 1_000_000), (counters.last_frame_us or 0) + 1)
        counters.lag = max(0.0, now - seen)
        self.metrics.lag.observe(counters.lag)
        counters.frames_read += 1
        counters.height = picture_height(pixels, self._pixel_format)
        counters.width = pixels.shape[1]
        self.metrics.frames.inc()
        try:
            with self.metrics.append_seconds.time():
                self._append(pixels, index, captured_us, now)
        except TRANSIENT as error:
            counters.dropped += 1
            self.metrics.dropped.inc()
            counters.fail(f"frame store: {error}")
            if counters.dropped % 100 == 1:
                log.warning("dropped frame %d: %s", counters.frames_read, error)
            return
        counters.last_frame_us = captured_us
        counters.recent.append(now)
        if self.state != "running":
            self.state = "running"

    def _append(self, pixels: Pixels, index: int, captured_us: int, now: float) -> None:
        self.buffer.append(
            pixels,
            source_index=index,
            sequence=self.counters.frames_read,
            captured_us=captured_us,
            keep=self._keep,
            hard_cap=self._cap,
            now_ms=int(now * 1000),
            pixel_format=self._pixel_format,
            colour=self._colour,
        )

    def _heartbeat(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now < self._next_heartbeat:
            return
        self._next_heartbeat = now + HEARTBEAT_SECONDS
        self.metrics.fps.set(self.counters.fps(now))
        try:
            self.registry.publish(self.status(now))
        except TRANSIENT as error:
            log.debug("heartbeat not published: %s", error)

    def status(self, now: float) -> CameraStatus:
        """The heartbeat as it stands."""
        counters = self.counters
        return CameraStatus(
            camera_id=self.buffer.camera_id,
            source=self.spec.shown,
            state=self.state,  # type: ignore[arg-type]  # only the literals above are assigned
            fps=round(counters.fps(now), 2),
            width=counters.width,
            height=counters.height,
            frames_read=counters.frames_read,
            late_frames=counters.late,
            dropped_frames=counters.dropped,
            lag_ms=round(counters.lag * 1000, 1),
            errors=counters.errors,
            last_error=counters.last_error,
            last_frame_at=from_us(counters.last_frame_us) if counters.last_frame_us else None,
            buffer_cap=self._cap,
            updated_at=utcnow(),
        )
