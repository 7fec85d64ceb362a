"""The frame codec: how one raw frame is laid out as the fields of a stream entry.

A frame is BGR (or grey), as OpenCV decodes, or the decoder's own YUV 4:2:0 planes (I420:
the Y plane, then U, then V, stacked as H x 3/2 rows of W bytes), half the bytes of BGR
(`SCO_FRAME_FORMAT=yuv`), with the colour description the stream gave them. The worker
turns either into the BGR picture it saves: for I420, by the conversion OpenCV's capture
would have made (FFmpeg's swscale, honouring that description), so the PNGs are the same
byte for byte whichever way the frame travelled.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from numpy.typing import NDArray

ENTRY_VERSION = 1
GREY, COLOUR = 2, 3  # dimensions of a single-channel and of a multi-channel frame

Pixels = NDArray[np.uint8]
PixelFormat = Literal["bgr", "i420"]  # "bgr" covers grey and any channels OpenCV gives
I420: PixelFormat = "i420"


@dataclass(frozen=True)
class Colour:
    """How YUV planes map to colours, in FFmpeg's numbers: the matrix (AVColorSpace: 1 is
    BT.709, 5 and 6 BT.601) and the range (AVColorRange: 1 limited, 2 full). Unspecified (2,
    0) converts as BT.601 in limited range, as FFmpeg does."""

    space: int = 2
    range: int = 0


UNSPECIFIED = Colour()


def picture_height(pixels: Pixels, pixel_format: PixelFormat) -> int:
    """Rows of the picture: I420 stacks its chroma planes under the Y plane's rows."""
    rows = int(pixels.shape[0])
    return rows * 2 // 3 if pixel_format == I420 else rows


def to_bgr(pixels: Pixels, pixel_format: PixelFormat, colour: Colour = UNSPECIFIED) -> Pixels:
    """The picture as BGR (grey stays grey): I420 converted by swscale as OpenCV's capture
    converts a decoded frame, with the frame's matrix and range, so equal to its BGR."""
    if pixel_format != I420:
        return pixels
    import av  # noqa: PLC0415  # only where frames are turned into pictures (the worker)
    from av.video.reformatter import VideoReformatter  # noqa: PLC0415

    if not hasattr(_converters, "reformatter"):  # one per thread: it keeps swscale's state,
        _converters.reformatter = VideoReformatter()  # a third of a conversion made anew
    frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
    frame.colorspace, frame.color_range = colour.space, colour.range
    return cast("Pixels", _converters.reformatter.reformat(frame, format="bgr24").to_ndarray())


_converters = threading.local()


class FrameCodecError(ValueError):
    """Raised for a stream entry this version cannot read."""


@dataclass(frozen=True)
class Frame:
    """One captured frame with where it came from and when."""

    stream_id: str
    pixels: Pixels
    source_index: int
    sequence: int
    captured_us: int
    pixel_format: PixelFormat = "bgr"
    colour: Colour = UNSPECIFIED

    @property
    def height(self) -> int:
        """Rows of the picture."""
        return picture_height(self.pixels, self.pixel_format)

    @property
    def width(self) -> int:
        """Columns of pixels."""
        return int(self.pixels.shape[1])

    def picture(self) -> Pixels:
        """The frame as the BGR (or grey) picture a recording saves."""
        return to_bgr(self.pixels, self.pixel_format, self.colour)


def encode_entry(
    pixels: Pixels,
    source_index: int,
    sequence: int,
    captured_us: int,
    *,
    pixel_format: PixelFormat = "bgr",
    colour: Colour = UNSPECIFIED,
) -> dict[str, bytes | int]:
    """Stream fields for a frame: its shape and type beside the raw bytes, no compression;
    an I420 frame says so, with its colour description (a BGR entry is what it always was)."""
    if pixels.dtype != np.uint8 or pixels.ndim not in {GREY, COLOUR}:
        raise FrameCodecError(f"unsupported frame: dtype {pixels.dtype}, shape {pixels.shape}")
    if pixel_format == I420 and (pixels.ndim != GREY or pixels.shape[0] % 3 or pixels.shape[1] % 2):
        raise FrameCodecError(f"not I420 planes of an even-sized picture: shape {pixels.shape}")
    channels = 1 if pixels.ndim == GREY else pixels.shape[2]
    fields: dict[str, bytes | int] = {
        "v": ENTRY_VERSION,
        "h": pixels.shape[0],
        "w": pixels.shape[1],
        "c": channels,
        "idx": source_index,
        "seq": sequence,
        "ts": captured_us,
        # bytes, not a memoryview: redis-py's hiredis serializer packs a memoryview far more
        # slowly than it copies (measured: 76 vs 95 XADD/s of 1080p frames, bench/ingest.py).
        "data": np.ascontiguousarray(pixels).tobytes(),
    }
    if pixel_format == I420:
        fields.update({"f": I420.encode(), "cs": colour.space, "cr": colour.range})
    return fields


def decode_entry(stream_id: bytes | str, fields: dict[bytes, bytes]) -> Frame:
    """A frame from stream fields; the pixels are a read-only view of the reply's bytes."""
    try:
        version = int(fields[b"v"])
        if version != ENTRY_VERSION:
            raise FrameCodecError(f"stream entry version {version} is not supported")
        height, width, channels = int(fields[b"h"]), int(fields[b"w"]), int(fields[b"c"])
        shape = (height, width) if channels == 1 else (height, width, channels)
        pixels = np.frombuffer(fields[b"data"], dtype=np.uint8).reshape(shape)
        return Frame(
            stream_id=stream_id.decode() if isinstance(stream_id, bytes) else stream_id,
            pixels=pixels,
            source_index=int(fields[b"idx"]),
            sequence=int(fields[b"seq"]),
            captured_us=int(fields[b"ts"]),
            pixel_format=_format_of(fields.get(b"f")),
            colour=_colour_of(fields),
        )
    except (KeyError, ValueError) as error:
        raise FrameCodecError(f"unreadable stream entry {stream_id!r}: {error}") from error


def _colour_of(fields: dict[bytes, bytes]) -> Colour:
    """An I420 entry's colour description; none written (older entries) is unspecified."""
    space, range_ = fields.get(b"cs"), fields.get(b"cr")
    return Colour(
        UNSPECIFIED.space if space is None else int(space),
        UNSPECIFIED.range if range_ is None else int(range_),
    )


def _format_of(field: bytes | None) -> PixelFormat:
    """An entry's pixel format: none written is BGR."""
    if field is None:
        return "bgr"
    if field == I420.encode():
        return I420
    raise ValueError(f"pixel format {field!r} is not supported")
