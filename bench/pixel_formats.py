"""What the frame store would gain by holding the decoder's own pixels (YUV 4:2:0) instead
of BGR: the floors of the design in docs/benchmarks.md ("Frames as the decoder made them").

    pip install av   # PyAV: not a dependency of the recorder (yet)
    python -m bench.pixel_formats

Per resolution, on the sample clip re-encoded as H.264 (what cameras send; needs ffmpeg):
- decode: CPU ms per frame, OpenCV to BGR (today) against PyAV to yuv420p, same libavcodec;
- bytes per frame, and what N = 30 frames take in a Redis stream (a real server);
- XADD: ms per frame, median, into a private Redis;
- what the worker would add: I420 -> BGR before the PNG, ms per frame, and how far its
  pixels are from OpenCV's own conversion (both BT.601; OpenCV's goes through swscale).
Medians of --runs runs, each after a warm-up pass.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import redis

from bench.sources import real_frames
from services.runtime.heap import keep_heap
from services.runtime.redisserver import RedisServer

SIZES = {720: (1280, 720), 1080: (1920, 1080)}
Decode = Callable[[Path, int], tuple[float, list[Any]]]


def h264_video(path: Path, width: int, height: int, frames: int) -> Path:
    """The sample clip at width x height as H.264, as a camera's stream would be."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("needs ffmpeg (apt-get install ffmpeg) to write H.264")
    raw = path.with_suffix(".avi")
    writer = cv2.VideoWriter(str(raw), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (width, height))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for frame in real_frames(width, height, frames):
        writer.write(frame)
    writer.release()
    encode = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-y", "-i", str(raw), *encode, str(path)], check=True
    )
    return path


def opencv_bgr(video: Path, count: int) -> tuple[float, list[Any]]:
    """CPU ms per frame decoding `count` frames to BGR with OpenCV, and the frames."""
    capture = cv2.VideoCapture(str(video))
    frames: list[Any] = []
    started = time.process_time()
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    spent = time.process_time() - started
    capture.release()
    return 1000 * spent / len(frames), frames


def pyav_yuv(video: Path, count: int) -> tuple[float, list[Any]]:
    """CPU ms per frame decoding `count` frames to yuv420p planes with PyAV, and the frames."""
    import av  # noqa: PLC0415  # optional: only this benchmark needs it

    frames: list[Any] = []
    started = time.process_time()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # as OpenCV decodes: frame threads
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="yuv420p"))  # Y, U, V stacked: h * 3/2 rows
            if len(frames) == count:
                break
    return 1000 * (time.process_time() - started) / len(frames), frames


def xadd_ms(client: redis.Redis, frames: list[Any], keep: int) -> tuple[float, int]:
    """Median ms per XADD of these frames into a stream capped at `keep`, and the bytes the
    server uses once it holds `keep` of them."""
    client.delete("frames")
    client.memory_purge()
    base = int(client.info("memory")["used_memory"])
    times = []
    for pixels in frames:
        payload = pixels.tobytes()
        started = time.perf_counter()
        client.xadd("frames", {"pixels": payload}, maxlen=keep)
        times.append(time.perf_counter() - started)
    used = int(client.info("memory")["used_memory"]) - base
    return 1000 * statistics.median(times), used


def to_bgr(frames: list[Any]) -> float:
    """Ms per frame converting yuv420p planes to BGR as the worker would: one frame at a
    time into the same buffer (kept memory, as the worker's heap is)."""
    height, width = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
    picture = np.empty((height, width, 3), np.uint8)
    started = time.perf_counter()
    for planes in frames:
        cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420, dst=picture)
    return 1000 * (time.perf_counter() - started) / len(frames)


def measure(video: Path, client: redis.Redis, count: int, keep: int) -> dict[str, float]:
    """One run: every figure of a row."""
    row: dict[str, float] = {}
    for name, decode in (("bgr", opencv_bgr), ("yuv", pyav_yuv)):
        decode(video, 10)  # warm the decoder's libraries and caches
        row[f"{name}_decode"], frames = decode(video, count)
        row[f"{name}_bytes"] = frames[0].nbytes
        row[f"{name}_xadd"], row[f"{name}_stored"] = xadd_ms(client, frames, keep)
        if name == "bgr":
            bgr = frames
        else:
            row["convert"] = to_bgr(frames)
            differences = [
                np.abs(cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420).astype(np.int16) - reference)
                for planes, reference in zip(frames[:10], bgr, strict=False)
            ]
            row["max_diff"] = float(max(int(d.max()) for d in differences))
            row["mean_diff"] = statistics.mean(float(d.mean()) for d in differences)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolutions", default="720,1080")
    parser.add_argument("--frames", type=int, default=150, help="frames decoded per run")
    parser.add_argument("--keep", type=int, default=30, help="N: frames the stream holds")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    keep_heap()  # as the capture and the worker do: frame-sized buffers are not faulted in anew
    try:
        import av  # noqa: F401, PLC0415  # checked first: a missing PyAV fails before any work
    except ImportError:
        raise SystemExit("needs PyAV: pip install av") from None
    print(
        "| source | decode CPU ms/frame BGR / YUV | MiB/frame BGR / YUV | XADD ms BGR / YUV "
        "| N frames in Redis MiB BGR / YUV | worker I420->BGR ms | max / mean diff |\n"
        "|---|---|---|---|---|---|---|"
    )
    with tempfile.TemporaryDirectory() as work, RedisServer(Path(work) / "redis") as server:
        client = redis.Redis.from_url(server.url)
        for height in (int(value) for value in args.resolutions.split(",")):
            width = SIZES[height][0]
            video = h264_video(Path(work) / f"clip-{height}.mp4", width, height, args.frames)
            runs = [measure(video, client, args.frames, args.keep) for _ in range(args.runs)]
            mid = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            print(
                f"| {height}p H.264 | {mid['bgr_decode']:.1f} / {mid['yuv_decode']:.1f} "
                f"| {mid['bgr_bytes'] / 2**20:.2f} / {mid['yuv_bytes'] / 2**20:.2f} "
                f"| {mid['bgr_xadd']:.2f} / {mid['yuv_xadd']:.2f} "
                f"| {mid['bgr_stored'] / 2**20:.0f} / {mid['yuv_stored'] / 2**20:.0f} "
                f"| {mid['convert']:.2f} | {mid['max_diff']:.0f} / {mid['mean_diff']:.2f} |"
            )
        client.close()


if __name__ == "__main__":
    main()
