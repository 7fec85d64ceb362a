"""Frame sources: a video file (looped), a camera index, or a network stream; via OpenCV
as BGR, or via PyAV as the decoder made them (`SCO_FRAME_FORMAT=yuv`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol, cast

import cv2

from services.capture.spec import SourceError, SourceSpec
from services.kernel.framecodec import I420, PixelFormat, Pixels

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0


class FrameSource(Protocol):
    """An open source: frames with their index in the source, at a nominal rate."""

    fps: float
    pixel_format: PixelFormat  # of every frame read, until the source is opened again

    def read(self) -> tuple[Pixels, int] | None:
        """The next frame and its index, or None when the source failed."""

    def position(self) -> float | None:
        """The last frame's position in the stream, in seconds, if the source knows it."""

    def close(self) -> None:
        """Release the device, file or connection."""


class OpenCVSource:
    """A cv2.VideoCapture; a file starts over at its end, a live source reports failure."""

    pixel_format: PixelFormat = "bgr"

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


class PyAVSource:
    """A file or stream decoded by PyAV (FFmpeg's libraries, as OpenCV's backend is), its
    frames as the decoder made them when that is YUV 4:2:0 (I420 planes, half of BGR's
    bytes), else as BGR. The first frame, decoded at opening, decides; a stream that changes
    its format or size midway is reopened. A file starts over at its end."""

    def __init__(self, spec: SourceSpec, timeout: float = 5.0) -> None:
        import av  # noqa: PLC0415  # only captures that hold the decoder's frames need it

        self.spec = spec
        self._errors: tuple[type[Exception], ...] = (av.FFmpegError, OSError)
        try:
            # A live source gives up on a silent peer after `timeout`, opening or reading.
            self._container = av.open(
                spec.target, timeout=timeout if spec.is_live else None, metadata_errors="ignore"
            )
        except self._errors as error:
            raise SourceError(
                f"source {spec.shown!r}: cannot open it as a {spec.kind}: {error}"
            ) from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"source {spec.shown!r}: no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame threads, as OpenCV decodes
        rate = self._stream.average_rate or self._stream.guessed_rate
        fps = float(rate) if rate else 0.0
        self.fps = fps if 0 < fps <= 240 else DEFAULT_FPS  # noqa: PLR2004  # sane camera rates
        self._frames = self._decode()
        self._index = 0
        self._time: float | None = None
        first = self._next()
        if first is None:
            self._container.close()
            raise SourceError(f"source {spec.shown!r}: cannot decode a frame")
        self._first: av.VideoFrame | None = first
        self._shape = (first.format.name, first.width, first.height)
        self.pixel_format: PixelFormat = I420 if _is_i420(first) else "bgr"

    def _decode(self) -> Iterator[av.VideoFrame]:
        return self._container.decode(self._stream)

    def _next(self) -> av.VideoFrame | None:
        """The next decoded frame; a file loops; None when a live source fails."""
        try:
            try:
                return next(self._frames)
            except StopIteration:
                if self.spec.is_live or self._index == 0:
                    return None
                self._container.seek(0)
                self._frames, self._index = self._decode(), 0
                return next(self._frames, None)
        except self._errors as error:
            if not self.spec.is_live:
                raise SourceError(
                    f"source {self.spec.shown!r}: cannot decode a frame: {error}"
                ) from None
            log.warning("source %r: %s", self.spec.shown, error)
            return None

    def read(self) -> tuple[Pixels, int] | None:
        """The next frame in the format chosen at opening; None if the source failed or
        changed its format or size (the capture then opens it again)."""
        frame = self._first if self._first is not None else self._next()
        self._first = None
        if frame is None:
            if not self.spec.is_live:
                raise SourceError(f"source {self.spec.shown!r}: cannot decode a frame")
            return None
        if (frame.format.name, frame.width, frame.height) != self._shape:
            log.warning("source %r changed its format or size; reopening", self.spec.shown)
            return None
        self._time = frame.time
        if self.pixel_format == I420:
            pixels = frame.to_ndarray()  # the planes as decoded: Y, then U, then V
        else:
            pixels = frame.to_ndarray(format="bgr24")
        index = self._index
        self._index += 1
        return cast("Pixels", pixels), index

    def position(self) -> float | None:
        """The stream's own time of the last frame read, if it has one."""
        return self._time

    def close(self) -> None:
        """Close the file or connection."""
        self._container.close()


JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full-range YUV, which the worker's conversion is not for


def _is_i420(frame: av.VideoFrame) -> bool:
    """Planar YUV 4:2:0 in limited range, of an even size: I420 as the worker converts it."""
    return (
        frame.format.name == "yuv420p"
        and frame.color_range != JPEG_RANGE
        and frame.width % 2 == 0
        and frame.height % 2 == 0
    )


def open_source(spec: SourceSpec, timeout: float = 5.0, frame_format: str = "bgr") -> FrameSource:
    """Open a source: with OpenCV as BGR, or for `frame_format` "yuv" a file or stream with
    PyAV (a camera index stays with OpenCV); a network source gives up on a silent peer
    after `timeout`."""
    if frame_format == "yuv" and spec.kind != "camera":
        return PyAVSource(spec, timeout)
    return OpenCVSource(spec, timeout)
