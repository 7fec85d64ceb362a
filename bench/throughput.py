"""Throughput, capture stability and memory while workers write recordings back to back.

For each source (720p, 1080p) and each worker count (1, 2 processes): the capture runs paced
at 30 fps; after a warm-up, `--events` events arrive at once (a backlog) and the workers
drain it. Reported, all from the same run:
- recordings/s from the first job's start to the last one's end, against the floor: the
  same read + encode + write + fsync of 30 frames by as many processes in a tight loop, at
  the workers' niceness (a floor at nice 0 takes the capture's CPU, which the recorder must
  not: `--floor-nice 0` shows it, with the late frames it causes);
- late frames of the capture (more than one period late) while the backlog drains;
- Redis used_memory in steady state against N x frame bytes, and its peak in the backlog.

Run: .venv/bin/python -m bench.throughput [--events 32] [--floor-seconds 8]

32 events: the floor is 8 s of steady state, and a drain of 16 at 720p on two workers took
about 4 s, where the first job's ramp-up and the last one's tail weighed a fifth.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path

import redis

from bench.floor import FRAMES, record_newest
from bench.sources import write_real_video
from bench.stack import Lateness, heartbeat, running, wait_for_frames
from services.ingest.events import make_ingest, store_clients
from services.kernel.contracts import EventIn
from services.kernel.settings import Settings
from services.stores.framebuffer import FrameBuffer
from services.stores.recordings import RecordingStore
from services.stores.storage import Storage
from services.worker.encoder import make_encoder, single_threaded_opencv


def floor_worker(
    settings: Settings, root: Path, seconds: float, nice: int, done: multiprocessing.Queue[int]
) -> None:
    """Record the newest 30 frames again and again for `seconds`; report how many."""
    os.nice(nice)
    client = redis.Redis.from_url(str(settings.redis_url))
    buffer = FrameBuffer(client, "bench")
    encode = make_encoder(settings.png_encoder)
    storage = Storage(root)
    count, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        name = f"floor-{os.getpid()}-{count}"
        record_newest(buffer, storage, encode, name, settings.read_page_bytes)
        count += 1
    done.put(count)


def floor_rate(
    settings: Settings, processes: int, seconds: float, root: Path, nice: int
) -> tuple[float, Lateness]:
    """Recordings/s of the floor with this many processes at this niceness, and the capture's
    late frames meanwhile."""
    results: multiprocessing.Queue[int] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=floor_worker, args=(settings, root, seconds, nice, results))
        for _ in range(processes)
    ]
    before = heartbeat(settings)
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=seconds + 60) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds, Lateness.between(before, heartbeat(settings))


async def accept_all(settings: Settings, events: int) -> list[str]:
    """Accept a backlog of events at once, as the API would; their recording IDs."""
    ingest = make_ingest(settings, *store_clients(settings, 5.0), owns=True)
    try:
        return [(await ingest.accept(EventIn(), None)).answer.recording_id for _ in range(events)]
    finally:
        await ingest.close()


def drain(settings: Settings, events: int) -> tuple[float, Lateness, int]:
    """Send a backlog, wait for it; recordings/s, the capture's late frames, peak memory."""
    frames = redis.Redis.from_url(str(settings.redis_url))
    state = redis.Redis.from_url(str(settings.broker_url))
    store = RecordingStore(state)
    peak, stop = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.05):
            peak = max(peak, int(frames.info("memory")["used_memory"]))

    sampler = threading.Thread(target=sample)
    sampler.start()
    before = heartbeat(settings)
    ids = asyncio.run(accept_all(settings, events))
    recordings = []
    for recording_id in ids:
        while (recording := store.get(recording_id)) is None or not recording.status.is_final:
            time.sleep(0.05)
        recordings.append(recording)
    after = heartbeat(settings)
    stop.set()
    sampler.join()
    first = min(recording.received_at for recording in recordings)
    last = max(recording.updated_at for recording in recordings)
    rate = events / (last - first).total_seconds()
    return rate, Lateness.between(before, after), peak


def run(width: int, height: int, workers: int, args: argparse.Namespace, work: Path) -> str:
    """One table row."""
    video = work / f"lane-{height}p.avi"
    if not video.exists():
        write_real_video(video, width, height)
    with running(
        work, video, ("capture", "worker"), workers=workers, worker_nice=args.worker_nice
    ) as settings:
        wait_for_frames(settings, FRAMES)
        time.sleep(3)
        client = redis.Redis.from_url(str(settings.redis_url))
        steady = int(client.info("memory")["used_memory"])
        client.close()
        floor, floor_late = floor_rate(
            settings, workers, args.floor_seconds, work / "floor", args.floor_nice
        )
        time.sleep(1)
        rate, late, peak = drain(settings, args.events)
    frame_bytes = width * height * 3
    return (
        f"| {width}x{height} | {workers} | {rate:.2f} | {floor:.2f} | {rate / floor:.2f} | "
        f"{late} | {floor_late} | "
        f"{steady / (FRAMES * frame_bytes):.2f} | {peak / 2**20:.0f} MB |"
    )


def main() -> None:
    """Print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=32)
    parser.add_argument("--floor-seconds", type=float, default=8.0)
    parser.add_argument(
        "--worker-nice", type=int, default=Settings.model_fields["worker_nice"].default
    )
    parser.add_argument(
        "--floor-nice", type=int, default=None, help="the floor's niceness (default: the workers')"
    )
    parser.add_argument("--sizes", nargs="+", default=["1280x720", "1920x1080"])
    args = parser.parse_args()
    single_threaded_opencv()  # as a worker encodes; before any OpenCV call or fork
    if args.floor_nice is None:
        args.floor_nice = args.worker_nice
    print(
        "| source | worker processes | recordings/s | floor recordings/s | ratio | "
        "late frames while draining | late frames while the floor ran | "
        "steady memory / (N x frame) | peak memory in backlog |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="sco-bench-") as work:
        for size in args.sizes:
            width, height = (int(part) for part in size.split("x"))
            for workers in (1, 2):
                print(run(width, height, workers, args, Path(work)), flush=True)


if __name__ == "__main__":
    main()
