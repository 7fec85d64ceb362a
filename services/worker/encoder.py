"""Lossless PNG encoders; which one runs is a setting.

OpenCV and fpng are imported by the first picture a process makes, not before: in a pool
process, and never in the worker's main process, which encodes nothing (OpenCV alone is
~50 MB of a process's memory).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import cast

from services.kernel.framecodec import GREY, Pixels

Encoder = Callable[[Pixels], bytes]


class EncodeError(RuntimeError):
    """Raised when a frame cannot be encoded."""


@functools.cache
def single_threaded_opencv() -> None:
    """OpenCV runs each call on the calling thread: its pool's threads spin between calls.

    fpng converts every frame to RGB with cv2.cvtColor, which runs on OpenCV's pool; its
    threads busy-wait after each call (40,000 sched_yield calls in 8 s per 1080p worker),
    taking CPU from the other workers and the capture. A worker process already keeps a
    core busy; one thread per call is all it can use. Call it before any
    OpenCV call and before forking: processes forked after inherit it, while a child that
    changes it once its parent used the pool hangs. The benchmarks' floors run the same way.
    Every function here calls it first; it runs once a process.
    """
    import cv2  # noqa: PLC0415  # see the module's docstring

    cv2.setNumThreads(1)


def make_encoder(name: str, compression: int = 1) -> Encoder:
    """An encoder by name: `fpng` (fast, larger files) or `cv2` (zlib at `compression`)."""
    if name == "fpng":
        return _encode_fpng
    if name == "cv2":
        return lambda pixels: _encode_cv2(pixels, compression)
    raise ValueError(f"unknown PNG encoder {name!r}; choose fpng or cv2")


def _encode_fpng(pixels: Pixels) -> bytes:
    if pixels.ndim == GREY:
        # fpng takes 3 or 4 channels; grey frames go through zlib instead of being widened.
        return _encode_cv2(pixels, 1)
    import fpng  # noqa: PLC0415  # see the module's docstring

    single_threaded_opencv()  # fpng converts to RGB with OpenCV
    encoded = fpng.from_cv2(pixels)
    if not encoded:
        raise EncodeError("fpng could not encode the frame")
    return bytes(encoded)


def _encode_cv2(pixels: Pixels, compression: int) -> bytes:
    import cv2  # noqa: PLC0415  # see the module's docstring

    single_threaded_opencv()
    ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise EncodeError("cv2 could not encode the frame")
    return encoded.tobytes()


THUMBNAIL_WIDTH = 320


def thumbnail(pixels: Pixels, width: int = THUMBNAIL_WIDTH) -> bytes:
    """A small JPEG of a frame for lists (not evidence: the PNGs are)."""
    import cv2  # noqa: PLC0415  # see the module's docstring

    single_threaded_opencv()
    height = max(1, round(pixels.shape[0] * width / pixels.shape[1]))
    small = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise EncodeError("cv2 could not encode the thumbnail")
    return encoded.tobytes()


def read_png(path: Path) -> Pixels:
    """The picture of a PNG written earlier, as it was encoded."""
    import cv2  # noqa: PLC0415  # see the module's docstring

    single_threaded_opencv()
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise EncodeError(f"cannot read {path}")
    return cast("Pixels", pixels)
