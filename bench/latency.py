"""Event -> complete recording latency with an idle worker, against its floor, in one run.

The stack runs as in production (capture, API and one worker process, two Redis servers),
fed by the sample clip scaled to 720p and 1080p at 30 fps. The floor is what any recorder
must do for the same 30 frames: read them from the stream, encode PNG, write and fsync,
measured in this process in the same run. Capture health (fps, late frames) is read from the
heartbeat while the recordings are written.

Run: .venv/bin/python -m bench.latency [--events 8] [--floor-runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import redis

from bench.floor import FRAMES, record_newest
from bench.sources import write_real_video
from bench.stack import Lateness, heartbeat, running, wait_for_api, wait_for_frames
from services.kernel.contracts import FINAL_STATUSES
from services.kernel.settings import Settings
from services.stores.framebuffer import FrameBuffer
from services.stores.storage import Storage
from services.worker.encoder import make_encoder, single_threaded_opencv


def floor_seconds(settings: Settings, root: Path, runs: int) -> list[float]:
    """Seconds of one floor recording, `runs` times, with the worker's encoder."""
    client = redis.Redis.from_url(str(settings.redis_url))
    buffer = FrameBuffer(client, settings.camera_id)
    encode = make_encoder(settings.png_encoder, settings.png_compression)
    results = []
    for run in range(runs):
        started = time.perf_counter()
        record_newest(buffer, Storage(root), encode, f"floor{run}", settings.read_page_bytes)
        results.append(time.perf_counter() - started)
        time.sleep(0.5)
    client.close()
    return results


def event_latencies(client: httpx.Client, events: int, spacing: float) -> list[float]:
    """Seconds from receipt to the worker's final update, per event, one at a time."""
    latencies = []
    for number in range(events):
        answer = client.post("/v1/events", json={"transaction_id": f"BENCH-{number}"})
        answer.raise_for_status()
        recording_id = answer.json()["recording_id"]
        while True:
            recording = client.get(f"/v1/recordings/{recording_id}").json()
            if recording["status"] in {status.value for status in FINAL_STATUSES}:
                break
            time.sleep(0.01)
        assert recording["status"] == "complete", recording
        received = datetime.fromisoformat(recording["received_at"])
        finished = datetime.fromisoformat(recording["updated_at"])
        latencies.append((finished - received).total_seconds())
        time.sleep(spacing)
    return latencies


def run_resolution(width: int, height: int, args: argparse.Namespace, work: Path) -> str:
    """One table row for one resolution."""
    video = work / f"lane-{height}p.avi"
    if not video.exists():
        write_real_video(video, width, height)
    with running(
        work, video, ("capture", "api", "worker"), worker_nice=args.worker_nice
    ) as settings:
        wait_for_api(settings)
        wait_for_frames(settings, FRAMES)
        time.sleep(2)
        floor = floor_seconds(settings, work / "floor", args.floor_runs)
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.port}", timeout=30) as client:
            before = heartbeat(settings)
            started = time.monotonic()
            latencies = event_latencies(client, args.events, args.spacing)
            elapsed = time.monotonic() - started
            after = heartbeat(settings)
    late = Lateness.between(before, after)
    median, floor_median = statistics.median(latencies), statistics.median(floor)
    return (
        f"| {width}x{height} | {median * 1000:.0f} ({min(latencies) * 1000:.0f}-"
        f"{max(latencies) * 1000:.0f}) | {floor_median * 1000:.0f} | "
        f"{median / floor_median:.2f} | {late.read / elapsed:.1f} | {late} |"
    )


def main() -> None:
    """Print a markdown table, one row per resolution."""
    single_threaded_opencv()  # the floors encode as a worker does
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=8)
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--floor-runs", type=int, default=5)
    parser.add_argument(
        "--worker-nice", type=int, default=Settings.model_fields["worker_nice"].default
    )
    args = parser.parse_args()
    print(
        "| source | event -> complete, median ms (min-max) | floor ms | ratio | "
        "capture fps while recording | late frames |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="sco-bench-") as work:
        for width, height in ((1280, 720), (1920, 1080)):
            print(run_resolution(width, height, args, Path(work)), flush=True)


if __name__ == "__main__":
    main()
