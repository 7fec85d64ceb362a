"""Realistic frames for the benchmarks: the sample clip, scaled to the resolution asked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import cast

import cv2

from services.capture.spec import sample_video
from services.kernel.framecodec import Pixels


def real_frames(width: int, height: int, count: int) -> list[Pixels]:
    """`count` decoded frames of the sample clip at width x height."""
    capture = cv2.VideoCapture(str(sample_video()))
    frames: list[Pixels] = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_CUBIC)
        frames.append(cast("Pixels", resized))
    capture.release()
    return frames


def write_real_video(
    path: Path, width: int, height: int, fps: float = 30.0, frames: int = 132
) -> Path:
    """The sample clip at width x height and `fps`, as high-quality MJPEG a camera might send."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for frame in real_frames(width, height, frames):
        writer.write(frame)
    writer.release()
    return path


def to_h264(source: Path, target: Path) -> Path:
    """`source` re-encoded as H.264 in YUV 4:2:0, as a camera streams it (x264's defaults,
    CRF 23: a counter strip's cells survive), by ffmpeg: OpenCV cannot write H.264."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("needs ffmpeg (apt-get install ffmpeg) to write H.264")
    if not target.exists():
        subprocess.run(  # ffmpeg on our own files
            [ffmpeg, "-loglevel", "error", "-y", "-i", str(source), "-c:v", "libx264",
             "-preset", "veryfast", "-pix_fmt", "yuv420p", str(target)],
            check=True,
        )  # fmt: skip
    return target
