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
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import redis

from bench.sources import write_real_video
from services.common.cameras import CameraRegistry
from services.common.contracts import CameraStatus, to_us
from services.common.framebuffer import FrameBuffer
from services.common.redisserver import RedisServer, free_port
from services.common.settings import Settings
from services.stack import settings_env
from services.worker.encoder import make_encoder
from services.worker.storage import Storage

FRAMES = 30


def start_services(settings: Settings, logs: Path) -> list[subprocess.Popen[bytes]]:
    """Capture, API and worker, each its own process, as `sco-recorder up` runs them."""
    env = {**os.environ, **settings_env(settings)}
    processes = []
    for service in ("capture", "api", "worker"):
        log = (logs / f"{service}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "services.cli", service],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return processes


def wait_ready(client: httpx.Client, timeout: float = 60.0) -> None:
    """Until /readyz says the camera is fresh."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("stack did not become ready")
        time.sleep(0.2)


def floor_seconds(settings: Settings, root: Path, runs: int) -> list[float]:
    """Read + encode + write + fsync of the newest 30 frames, tight loop, same encoder."""
    client = redis.Redis.from_url(str(settings.redis_url))
    buffer = FrameBuffer(client, settings.camera_id)
    encode = make_encoder(settings.png_encoder, settings.png_compression)
    storage = Storage(root)
    results = []
    for run in range(runs):
        window = buffer.window(to_us(datetime.now().astimezone()), FRAMES, 0)
        started = time.perf_counter()
        with storage.staging(f"floor{run}") as staged:
            for number, frame in enumerate(
                buffer.read(window.ids[0], window.ids[-1], settings.read_page_bytes)
            ):
                staged.write(f"frame_{number:04d}.png", encode(frame.pixels))
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
            if recording["status"] in {"complete", "partial", "failed"}:
                break
            time.sleep(0.01)
        assert recording["status"] == "complete", recording
        received = datetime.fromisoformat(recording["received_at"])
        finished = datetime.fromisoformat(recording["updated_at"])
        latencies.append((finished - received).total_seconds())
        time.sleep(spacing)
    return latencies


def heartbeat(settings: Settings) -> CameraStatus:
    """The capture's current status."""
    client = redis.Redis.from_url(str(settings.redis_url))
    status = CameraRegistry(client).read(settings.camera_id)
    client.close()
    assert status is not None
    return status


def run_resolution(width: int, height: int, args: argparse.Namespace, work: Path) -> str:
    """One table row for one resolution."""
    video = write_real_video(work / f"lane-{height}p.avi", width, height)
    with (
        RedisServer(work / f"frames-{height}", name="frames") as frames,
        RedisServer(work / f"broker-{height}", persistent=True, name="broker") as broker,
    ):
        settings = Settings(
            source=str(video), camera_id="bench", frames=FRAMES, redis_url=frames.url,
            broker_url=broker.url, output_dir=work / f"out-{height}", port=free_port(),
            workers=1, log_level="WARNING",
        )  # fmt: skip
        processes = start_services(settings, work)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{settings.port}", timeout=30) as client:
                wait_ready(client)
                time.sleep(2)
                floor = floor_seconds(settings, work / "floor", args.floor_runs)
                before = heartbeat(settings)
                started = time.monotonic()
                latencies = event_latencies(client, args.events, args.spacing)
                elapsed = time.monotonic() - started
                after = heartbeat(settings)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    frames_read = after.frames_read - before.frames_read
    late = after.late_frames - before.late_frames
    median, floor_median = statistics.median(latencies), statistics.median(floor)
    return (
        f"| {width}x{height} | {median * 1000:.0f} ({min(latencies) * 1000:.0f}-"
        f"{max(latencies) * 1000:.0f}) | {floor_median * 1000:.0f} | "
        f"{median / floor_median:.2f} | {frames_read / elapsed:.1f} | "
        f"{late} of {frames_read} ({100 * late / max(1, frames_read):.1f} %) |"
    )


def main() -> None:
    """Print a markdown table, one row per resolution."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=8)
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--floor-runs", type=int, default=5)
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
