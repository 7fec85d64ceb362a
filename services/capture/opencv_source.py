"""A source decoded by OpenCV, as BGR: camera indices, and every source with
`SCO_FRAME_FORMAT=bgr`."""

from __future__ import annotations

from typing import cast

import cv2

from services.capture.source import DEFAULT_FPS
from services.capture.spec import SourceError, SourceSpec
from services.kernel.framecodec import UNSPECIFIED, Colour, PixelFormat, Pixels


class OpenCVSource:
    """A cv2.VideoCapture; a file starts over at its end, a live source reports failure."""

    pixel_format: PixelFormat = "bgr"
    colour: Colour = UNSPECIFIED

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
