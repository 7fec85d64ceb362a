"""Frame sources: a video file (looped), a camera index, or a network stream; via PyAV as
the decoder made them (`SCO_FRAME_FORMAT=yuv`, the default), or via OpenCV as BGR. Each
library is imported only by a capture that uses it: OpenCV alone is ~50 MB of a process."""

from __future__ import annotations

from typing import Protocol

from services.capture.spec import SourceSpec
from services.kernel.framecodec import Colour, PixelFormat, Pixels

DEFAULT_FPS = 25.0


class FrameSource(Protocol):
    """An open source: frames with their index in the source, at a nominal rate."""

    fps: float
    pixel_format: PixelFormat  # of every frame read, until the source is opened again
    colour: Colour  # how I420 planes map to colours, likewise

    def read(self) -> tuple[Pixels, int] | None:
        """The next frame and its index, or None when the source failed."""

    def position(self) -> float | None:
        """The last frame's position in the stream, in seconds, if the source knows it."""

    def close(self) -> None:
        """Release the device, file or connection."""


def open_source(spec: SourceSpec, timeout: float = 5.0, *, frame_format: str) -> FrameSource:
    """Open a source: for `frame_format` "yuv" a file or stream with PyAV, else (and a
    camera index always) with OpenCV as BGR; a network source gives up on a silent peer
    after `timeout`."""
    # Imported here, each only where it is used (see the module's docstring).
    if frame_format == "yuv" and spec.kind != "camera":
        from services.capture.pyav_source import PyAVSource  # noqa: PLC0415

        return PyAVSource(spec, timeout)
    from services.capture.opencv_source import OpenCVSource  # noqa: PLC0415

    return OpenCVSource(spec, timeout)
