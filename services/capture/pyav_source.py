"""A file or stream decoded by PyAV, its frames as the decoder made them where it can
(`SCO_FRAME_FORMAT=yuv`, the default)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import cast

import av

from services.capture.source import DEFAULT_FPS
from services.capture.spec import SourceError, SourceSpec
from services.kernel.framecodec import I420, Colour, PixelFormat, Pixels

log = logging.getLogger(__name__)


class PyAVSource:
    """A file or stream decoded by PyAV (FFmpeg's libraries, as OpenCV's backend is), its
    frames as the decoder made them when that is YUV 4:2:0 (I420 planes, half of BGR's
    bytes, with the stream's matrix and range), else as BGR. The first frame, decoded at
    opening, decides; a stream that changes its format, size or colour midway is reopened.
    A file starts over at its end."""

    def __init__(self, spec: SourceSpec, timeout: float = 5.0) -> None:
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
        self._shape = (first.format.name, first.width, first.height, _colour_of(first))
        self.pixel_format: PixelFormat = I420 if _is_i420(first) else "bgr"
        self.colour = _colour_of(first)

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
        changed its format, size or colour (the capture then opens it again)."""
        frame = self._first if self._first is not None else self._next()
        self._first = None
        if frame is None:
            if not self.spec.is_live:
                raise SourceError(f"source {self.spec.shown!r}: cannot decode a frame")
            return None
        if (frame.format.name, frame.width, frame.height, _colour_of(frame)) != self._shape:
            log.warning("source %r changed its format, size or colour; reopening", self.spec.shown)
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


YUV_420 = frozenset({"yuv420p", "yuvj420p"})  # the same planes; "j" is JPEG's full range
FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def _is_i420(frame: av.VideoFrame) -> bool:
    """Planar YUV 4:2:0 of an even size: I420 as the worker converts it."""
    return frame.format.name in YUV_420 and frame.width % 2 == 0 and frame.height % 2 == 0


def _colour_of(frame: av.VideoFrame) -> Colour:
    """The frame's matrix and range; a "j" format is full range whatever the frame says."""
    full = frame.format.name == "yuvj420p"
    return Colour(frame.colorspace, FULL_RANGE if full else frame.color_range)
