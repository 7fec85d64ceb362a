"""Test videos whose frames carry their own index, readable back from a decoded PNG."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from services.kernel.framecodec import Pixels

BITS = 12
CELL = 16


def draw_index(index: int, width: int, height: int) -> Pixels:
    """A frame showing `index` as text and as black/white cells that survive lossy codecs."""
    frame = np.full((height, width, 3), 90, dtype=np.uint8)
    frame[CELL * 2 :, :, 1] = (index * 7) % 256  # the picture changes every frame
    for bit in range(BITS):
        value = 255 if index >> bit & 1 else 0
        frame[0:CELL, bit * CELL : (bit + 1) * CELL] = value
    cv2.putText(
        frame, str(index), (8, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2
    )
    return frame


def write_h264(
    path: Path,
    frames: int,
    width: int = 320,
    height: int = 240,
    fps: float = 25.0,
    pixel_format: str = "yuv420p",
    tags: tuple[str, ...] = (),
) -> Path:
    """The indexed frames as lossless H.264, in YUV 4:2:0 unless asked (what a camera sends,
    without the loss), with ffmpeg's colour `tags` if any; written by ffmpeg: OpenCV cannot
    write H.264."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg is not None, "these tests need ffmpeg (apt-get install ffmpeg)"
    mjpeg = write_video(path.with_suffix(".avi"), frames, width, height, fps)
    subprocess.run(  # ffmpeg on the test's own file
        [ffmpeg, "-loglevel", "error", "-y", "-i", str(mjpeg), "-c:v", "libx264",
         "-preset", "ultrafast", "-qp", "0", "-pix_fmt", pixel_format, *tags, str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def read_index(frame: NDArray[Any]) -> int:
    """The index drawn by `draw_index`, read from the cells' mean brightness."""
    index = 0
    for bit in range(BITS):
        cell = frame[2 : CELL - 2, bit * CELL + 2 : (bit + 1) * CELL - 2]
        if float(cell.mean()) > 127:
            index |= 1 << bit
    return index


def write_video(
    path: Path, frames: int, width: int = 320, height: int = 240, fps: float = 25.0
) -> Path:
    """An MJPEG AVI of `frames` indexed frames, decoded by OpenCV like any camera file."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPEG here"
    for index in range(frames):
        writer.write(draw_index(index, width, height))
    writer.release()
    return path
