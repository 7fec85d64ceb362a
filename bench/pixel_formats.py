"""What the frame store gains by holding the decoder's own pixels (YUV 4:2:0, what
`SCO_FRAME_FORMAT=yuv` holds) instead of BGR: the floors, docs/benchmarks.md section 8.

    python -m bench.pixel_formats

Per resolution, on the sample clip re-encoded as H.264 (what cameras send; needs ffmpeg):
- decode: CPU ms per frame, OpenCV to BGR (today) against PyAV to yuv420p, same libavcodec;
- bytes per frame, and what N = 30 frames take in a Redis stream (a real server);
- XADD: ms per frame, median, into a private Redis;
- what the worker adds: I420 -> BGR before the PNG (`framecodec.to_bgr`), ms per frame,
  and how far its pixels are from OpenCV's own decoding to BGR (they should not differ).
Medians of --runs runs, each after a warm-up pass.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from bench.sources import to_h264, write_real_video
from services.capture.source import open_source
from services.capture.spec import parse_source
from services.kernel.framecodec import I420, Colour, Pixels, to_bgr
from services.runtime.heap import keep_heap
from services.runtime.redisserver import RedisServer

SIZES = {720: (1280, 720), 1080: (1920, 1080)}


def h264_video(path: Path, width: int, height: int, frames: int) -> Path:
    """The sample clip at width x height as H.264, as a camera's stream would be."""
    return to_h264(write_real_video(path.with_suffix(".avi"), width, height, frames=frames), path)


def decode(video: Path, count: int, frame_format: str) -> tuple[float, list[Pixels], Colour]:
    """CPU ms per frame decoding `count` frames with the capture's own source for the frame
    format (OpenCV to BGR, PyAV to the decoder's planes), the frames, and their colour."""
    source = open_source(parse_source(str(video)), frame_format=frame_format)
    frames: list[Pixels] = []
    started = time.process_time()
    while len(frames) < count and (got := source.read()) is not None:
        frames.append(got[0])
    spent = time.process_time() - started
    source.close()
    return 1000 * spent / len(frames), frames, source.colour


def xadd_ms(client: redis.Redis, frames: list[Pixels], keep: int) -> tuple[float, int]:
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


def conversion_ms(frames: list[Pixels], colour: Colour) -> float:
    """Ms per frame converting I420 planes to BGR as the worker does."""
    started = time.perf_counter()
    for planes in frames:
        to_bgr(planes, I420, colour)
    return 1000 * (time.perf_counter() - started) / len(frames)


def measure(video: Path, client: redis.Redis, count: int, keep: int) -> dict[str, float]:
    """One run: every figure of a row."""
    row: dict[str, float] = {}
    for name in ("bgr", "yuv"):
        decode(video, 10, name)  # warm the decoder's libraries and caches
        row[f"{name}_decode"], frames, colour = decode(video, count, name)
        row[f"{name}_bytes"] = frames[0].nbytes
        row[f"{name}_xadd"], row[f"{name}_stored"] = xadd_ms(client, frames, keep)
        if name == "bgr":
            bgr = frames
        else:
            row["convert"] = conversion_ms(frames, colour)
            differences = [
                np.abs(to_bgr(planes, I420, colour).astype(np.int16) - reference)
                for planes, reference in zip(frames[:10], bgr, strict=False)
            ]
            row["max_diff"] = float(max(int(d.max()) for d in differences))
            row["mean_diff"] = statistics.mean(float(d.mean()) for d in differences)
    return row


def table_row(label: str, row: dict[str, float]) -> str:
    """One markdown row of the figures of `measure`."""
    return (
        f"| {label} | {row['bgr_decode']:.1f} / {row['yuv_decode']:.1f} "
        f"| {row['bgr_bytes'] / 2**20:.2f} / {row['yuv_bytes'] / 2**20:.2f} "
        f"| {row['bgr_xadd']:.2f} / {row['yuv_xadd']:.2f} "
        f"| {row['bgr_stored'] / 2**20:.0f} / {row['yuv_stored'] / 2**20:.0f} "
        f"| {row['convert']:.2f} | {row['max_diff']:.0f} / {row['mean_diff']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolutions", default="720,1080")
    parser.add_argument("--frames", type=int, default=150, help="frames decoded per run")
    parser.add_argument("--keep", type=int, default=30, help="N: frames the stream holds")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    keep_heap()  # as the capture and the worker do: frame-sized buffers are not faulted in anew
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
            for number, run in enumerate(runs, 1):
                print(table_row(f"{height}p H.264, run {number}", run), flush=True)
            mid = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            print(table_row(f"**{height}p H.264, median of {len(runs)}**", mid))
        client.close()


if __name__ == "__main__":
    main()
