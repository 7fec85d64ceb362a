"""Against the obvious design: a single-process recorder as a quick prototype writes it.

The prototype keeps a `deque` of the last N frames filled by a capture thread (paced at
30 fps) and, for each event, writes them with `cv2.imwrite` while holding the capture's
lock. Measured per recording: its latency, and how long the capture was stalled (the
largest gap between two frames during the recording, less one frame period). Ours is
measured in the same run by `bench.latency`'s own method on the same clip.

Run: .venv/bin/python -m bench.naive [--events 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import cast

import cv2

from bench.latency import run_resolution
from bench.sources import write_real_video
from services.kernel.framecodec import Pixels
from services.kernel.settings import Settings

FRAMES = 30
PERIOD = 1 / 30


class NaiveRecorder:
    """The prototype: one process, one lock, frames in a deque."""

    def __init__(self, video: Path) -> None:
        self.frames: deque[tuple[float, Pixels]] = deque(maxlen=FRAMES)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.arrivals: list[float] = []
        self.thread = threading.Thread(target=self._capture, args=(video,))

    def _capture(self, video: Path) -> None:
        capture = cv2.VideoCapture(str(video))
        started, emitted = time.monotonic(), 0
        while not self.stop.is_set():
            ok, frame = capture.read()
            if not ok:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            due = started + emitted * PERIOD
            time.sleep(max(0.0, due - time.monotonic()))
            emitted += 1
            with self.lock:
                now = time.monotonic()
                self.frames.append((now, cast("Pixels", frame)))
                self.arrivals.append(now)

    def record(self, folder: Path) -> tuple[float, float]:
        """Write the N frames; the latency and the capture's stall during it."""
        folder.mkdir(parents=True)
        started = time.monotonic()
        with self.lock:
            for number, (_, frame) in enumerate(self.frames):
                cv2.imwrite(str(folder / f"frame_{number + 1:04d}.png"), frame)
            (folder / "metadata.json").write_text(json.dumps({"frames": len(self.frames)}))
        finished = time.monotonic()
        time.sleep(0.2)
        window = [t for t in self.arrivals if started - 0.1 <= t <= finished + 0.2]
        gaps = [later - earlier for earlier, later in itertools.pairwise(window)]
        return finished - started, max(gaps, default=0.0) - PERIOD


def naive_row(width: int, height: int, events: int, work: Path) -> str:
    """The prototype's latency and stall, medians over `events` recordings."""
    video = work / f"lane-{height}p.avi"
    if not video.exists():
        write_real_video(video, width, height)
    recorder = NaiveRecorder(video)
    recorder.thread.start()
    time.sleep(2)
    results = [recorder.record(work / f"naive-{height}-{number}") for number in range(events)]
    recorder.stop.set()
    recorder.thread.join()
    latency = statistics.median(result[0] for result in results)
    stall = statistics.median(result[1] for result in results)
    return f"| {width}x{height} | naive prototype | {latency * 1000:.0f} | {stall * 1000:.0f} |"


def main() -> None:
    """Print the prototype's rows, then ours from the same run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5)
    args = parser.parse_args()
    print("| source | recorder | latency, median ms | capture stall per recording, median ms |")
    print("|---|---|---|---|")
    latency_args = argparse.Namespace(
        events=args.events,
        spacing=1.5,
        floor_runs=3,
        worker_nice=Settings.model_fields["worker_nice"].default,
    )
    with tempfile.TemporaryDirectory(prefix="sco-bench-") as folder:
        work = Path(folder)
        for width, height in ((1280, 720), (1920, 1080)):
            print(naive_row(width, height, args.events, work), flush=True)
            print(f"ours (bench.latency row): {run_resolution(width, height, latency_args, work)}")


if __name__ == "__main__":
    main()
