"""The frame codec: how one raw frame is laid out as the fields of a stream entry.

A frame is BGR (or grey), as OpenCV decodes, or the decoder's own YUV 4:2:0 planes (I420:
the Y plane, then U, then V, stacked as H x 3/2 rows of W bytes), half the bytes of BGR
(`SCO_FRAME_FORMAT=yuv`). The worker turns either into the BGR picture it saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from numpy.typing import NDArray

ENTRY_VERSION = 1
GREY, COLOUR = 2, 3  # dimensions of a single-channel and of a multi-channel frame

Pixels = NDArray[np.uint8]
PixelFormat = Literal["bgr", "i420"]  # "bgr" covers grey and any channels OpenCV gives
I420: PixelFormat = "i420"


def picture_height(pixels: Pixels, pixel_format: PixelFormat) -> int:
    """Rows of the picture: I420 stacks its chroma planes under the Y plane's rows."""
    rows = int(pixels.shape[0])
    return rows * 2 // 3 if pixel_format == I420 else rows


def to_bgr(pixels: Pixels, pixel_format: PixelFormat) -> Pixels:
    """The picture as BGR (grey stays grey): I420 converted (BT.601, as OpenCV decodes)."""
    if pixel_format != I420:
        return pixels
    import cv2  # noqa: PLC0415  # only where frames are turned into pictures (the worker)

    return cast("Pixels", cv2.cvtColor(pixels, cv2.COLOR_YUV2BGR_I420))


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
        return to_bgr(self.pixels, self.pixel_format)


def encode_entry(
    pixels: Pixels,
    source_index: int,
    sequence: int,
    captured_us: int,
    pixel_format: PixelFormat = "bgr",
) -> dict[str, bytes | int]:
    """Stream fields for a frame: its shape and type beside the raw bytes, no compression;
    an I420 frame says so (a BGR entry is what it always was)."""
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
        fields["f"] = I420.encode()
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
        )
    except (KeyError, ValueError) as error:
        raise FrameCodecError(f"unreadable stream entry {stream_id!r}: {error}") from error


def _format_of(field: bytes | None) -> PixelFormat:
    """An entry's pixel format: none written is BGR."""
    if field is None:
        return "bgr"
    if field == I420.encode():
        return I420
    raise ValueError(f"pixel format {field!r} is not supported")
