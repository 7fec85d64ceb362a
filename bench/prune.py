"""Prune: 100,000 small recordings deleted by the age rule, and the API's latency meanwhile.

The state of `--recordings` final recordings, 40 days old, is written through the same
scripts the API and the workers use, each with a folder of one small file; the capture
records the 720p clip and the API (one process) answers wrk, posting events on
`--connections` connections. The API's p50/p99 are measured in windows of `--seconds`:
first with nothing else running (the floor), then while one `sco-recorder prune` deletes
everything (its wall time is reported), in the same run. Each pass repeats `--runs` times
on fresh data; the figures are medians.

Run: .venv/bin/python -m bench.prune [--recordings 100000] [--runs 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import redis

from bench.api_load import LUA, parse
from bench.sources import write_real_video
from bench.stack import running, wait_for_api, wait_for_frames
from services.kernel import keys
from services.kernel.contracts import Recording, Status, utcnow
from services.kernel.settings import Settings
from services.runtime.launcher import service_env
from services.stores.recordings import RecordingKeys
from services.stores.scripts import CREATE, UPDATE
from services.stores.storage import Storage

CHUNK = 2000
SIZE = 200  # bytes of each recording's one file


def populate(settings: Settings, count: int) -> None:
    """`count` final recordings of camera `bench`, 40 days old, each with a small folder,
    written through the scripts the API (create) and the workers (update) run."""
    client = redis.Redis.from_url(settings.state_store_url)
    create, update = (client.register_script(script.source) for script in (CREATE, UPDATE))
    storage = Storage(settings.output_dir.resolve())
    moment = utcnow() - timedelta(days=40)
    for first in range(0, count, CHUNK):
        pipe = client.pipeline(transaction=False)
        for number in range(first, min(count, first + CHUNK)):
            received = moment + timedelta(milliseconds=number)
            recording = Recording(
                recording_id=uuid.uuid4().hex, camera_id="bench", status=Status.QUEUED,
                frames_requested=1, event_time=received, received_at=received,
                updated_at=received, deadline=received + timedelta(minutes=10),
            )  # fmt: skip
            folder = storage.path_of("bench", received.date(), recording.recording_id)
            folder.mkdir(parents=True)
            (folder / "frame_0001.png").write_bytes(os.urandom(SIZE))
            script_keys, args = RecordingKeys._create_call(recording, None, 60, "", 0)
            create(keys=script_keys, args=args, client=pipe)
            fields = {"status": "complete", "frames_saved": "1", "bytes": str(SIZE)}
            script_keys, args = UPDATE.bind(
                recording=keys.recording(recording.recording_id), open=keys.RECORDINGS_OPEN,
                **RecordingKeys._final_keys("bench"), recording_id=recording.recording_id,
                final="1", camera_id="bench", fields=[x for pair in fields.items() for x in pair],
            )  # fmt: skip
            update(keys=script_keys, args=args, client=pipe)
        pipe.execute()
    client.close()


class Window(NamedTuple):
    """One wrk window: events/s, p50 and p99 in ms."""

    rate: float
    p50: float
    p99: float


@dataclass(frozen=True)
class Run:
    """One run: the floor window, the windows while pruning, and how long pruning took."""

    floor: Window
    during: list[Window]
    prune_seconds: float
    summary: str
    folders_left: int


def latency(wrk: str, url: str, script: Path, seconds: int, connections: int) -> Window:
    """One wrk window on the events route."""
    output = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rate, p50, p99, _errors = parse(output)
    return Window(rate, p50, p99)


def one_run(wrk: str, work: Path, video: Path, script: Path, args: argparse.Namespace) -> Run:
    """Populate, measure the floor, then measure while `sco-recorder prune` runs."""
    with running(
        work, video, ("capture", "api"), retention_days=30, min_free_bytes=0, prune_batch=200
    ) as settings:
        wait_for_frames(settings, 30)
        wait_for_api(settings)
        populate(settings, args.recordings)
        url = f"http://127.0.0.1:{settings.port}/v1/events"
        floor = latency(wrk, url, script, args.seconds, args.connections)
        report = settings.output_dir.parent / "prune.txt"
        started = time.monotonic()
        with report.open("w") as out:
            pruning = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "prune"],
                env=service_env(settings), stdout=out,
            )  # fmt: skip
            during = []
            while pruning.poll() is None:
                during.append(latency(wrk, url, script, args.seconds, args.connections))
        prune_seconds = time.monotonic() - started
        output = report.read_text()
        left = sum(1 for _ in settings.output_dir.glob("bench/*/*"))
    return Run(floor, during, prune_seconds, " / ".join(output.splitlines()[-2:]), left)


def main() -> None:
    """Print a markdown row: prune time, and the API's latency floor vs while pruning."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recordings", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    runs = []
    with tempfile.TemporaryDirectory(prefix="sco-bench-") as folder:
        work = Path(folder)
        video = write_real_video(work / "lane.avi", 1280, 720)
        script = work / "post.lua"
        script.write_text(LUA)
        for _ in range(args.runs):
            run = one_run(wrk, work, video, script, args)
            print(run, file=sys.stderr)
            runs.append(run)
    seconds = statistics.median(run.prune_seconds for run in runs)
    floor_p50 = statistics.median(run.floor.p50 for run in runs)
    floor_p99 = statistics.median(run.floor.p99 for run in runs)
    # While pruning: each run's median window, and its worst window's p99.
    during_p50 = statistics.median(statistics.median(w.p50 for w in run.during) for run in runs)
    during_p99 = statistics.median(statistics.median(w.p99 for w in run.during) for run in runs)
    worst_p99 = statistics.median(max(w.p99 for w in run.during) for run in runs)
    print("| recordings | prune s | recordings/s | API p50 ms: floor / pruning | "
          "API p99 ms: floor / pruning (worst window) | p99 ratio | runs |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.recordings:,} | {seconds:.1f} | {args.recordings / seconds:,.0f} | "
        f"{floor_p50:.1f} / {during_p50:.1f} | {floor_p99:.1f} / {during_p99:.1f} "
        f"({worst_p99:.1f}) | {during_p99 / floor_p99:.2f} | {len(runs)} |"
    )
    print(f"last run: {runs[-1].folders_left} folders left; prune said: {runs[-1].summary}")


if __name__ == "__main__":
    main()
