"""Lossless PNG encoders; which one runs is a setting."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import fpng

from services.kernel.framecodec import GREY, Pixels

Encoder = Callable[[Pixels], bytes]


class EncodeError(RuntimeError):
    """Raised when a frame cannot be encoded."""


def single_threaded_opencv() -> None:
    """OpenCV runs each call on the calling thread: its pool's threads spin between calls.

    fpng converts every frame to RGB with cv2.cvtColor, which runs on OpenCV's pool; its
    threads busy-wait after each call (40,000 sched_yield calls in 8 s per 1080p worker),
    taking CPU from the other workers and the capture. A worker process already keeps a
    core busy; one thread per call is all it can use. Call it before any
    OpenCV call and before forking: processes forked after inherit it, while a child that
    changes it once its parent used the pool hangs. The benchmarks' floors run the same way.
    """
    cv2.setNumThreads(1)


def make_encoder(name: str, compression: int = 1) -> Encoder:
    """An encoder by name: `fpng` (fast, larger files) or `cv2` (zlib at `compression`)."""
    if name == "fpng":
        return _encode_fpng
    if name == "cv2":
        params = [cv2.IMWRITE_PNG_COMPRESSION, compression]
        return lambda pixels: _encode_cv2(pixels, params)
    raise ValueError(f"unknown PNG encoder {name!r}; choose fpng or cv2")


def _encode_fpng(pixels: Pixels) -> bytes:
    if pixels.ndim == GREY:
        # fpng takes 3 or 4 channels; grey frames go through zlib instead of being widened.
        return _encode_cv2(pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    encoded = fpng.from_cv2(pixels)
    if not encoded:
        raise EncodeError("fpng could not encode the frame")
    return bytes(encoded)


def _encode_cv2(pixels: Pixels, params: list[int]) -> bytes:
    ok, encoded = cv2.imencode(".png", pixels, params)
    if not ok:
        raise EncodeError("cv2 could not encode the frame")
    return encoded.tobytes()


THUMBNAIL_WIDTH = 320


def thumbnail(pixels: Pixels, width: int = THUMBNAIL_WIDTH) -> bytes:
    """A small JPEG of a frame for lists (not evidence: the PNGs are)."""
    height = max(1, round(pixels.shape[0] * width / pixels.shape[1]))
    small = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise EncodeError("cv2 could not encode the thumbnail")
    return encoded.tobytes()
