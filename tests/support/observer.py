"""Ground truth: every frame a capture put in a stream, read as it arrives."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import cast

import redis

from services.kernel import keys
from services.kernel.framecodec import Frame, decode_entry

READY_TIMEOUT = 30.0


@dataclass
class StreamObserver:
    """Ground truth: every frame the capture put in the stream, read as it arrives."""

    client: redis.Redis
    camera_id: str
    frames: list[Frame] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> StreamObserver:
        """Follow the stream from its beginning."""
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()
        return self

    def _follow(self) -> None:
        last = "0-0"
        stream = keys.frame_stream(self.camera_id)
        while not self._stop.is_set():
            replies = cast(
                "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]",
                self.client.xread({stream: last}, block=100, count=50),
            )
            for _, entries in replies:
                for stream_id, fields in entries:
                    self.frames.append(decode_entry(stream_id, fields))
                    last = stream_id.decode()

    def stop(self) -> None:
        """Stop following."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_for(self, count: int, timeout: float = READY_TIMEOUT) -> None:
        """Wait until at least `count` frames were seen."""
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            assert time.monotonic() < deadline, f"only {len(self.frames)} frames arrived"
            time.sleep(0.02)

    def by_id(self) -> dict[str, Frame]:
        """Seen frames by stream ID."""
        return {frame.stream_id: frame for frame in list(self.frames)}
