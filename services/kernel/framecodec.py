"""The frame codec: how one raw frame is laid out as the fields of a stream entry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

ENTRY_VERSION = 1
GREY, COLOUR = 2, 3  # dimensions of a single-channel and of a multi-channel frame

Pixels = NDArray[np.uint8]


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

    @property
    def height(self) -> int:
        """Rows of pixels."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Columns of pixels."""
        return int(self.pixels.shape[1])


def encode_entry(
    pixels: Pixels, source_index: int, sequence: int, captured_us: int
) -> dict[str, bytes | int]:
    """Stream fields for a frame: its shape and type beside the raw bytes, no compression."""
    if pixels.dtype != np.uint8 or pixels.ndim not in {GREY, COLOUR}:
        raise FrameCodecError(f"unsupported frame: dtype {pixels.dtype}, shape {pixels.shape}")
    channels = 1 if pixels.ndim == GREY else pixels.shape[2]
    return {
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
        )
    except (KeyError, ValueError) as error:
        raise FrameCodecError(f"unreadable stream entry {stream_id!r}: {error}") from error
