"""PNG encoders on real video frames: ms per frame and size, to choose the default.

Run: .venv/bin/python bench/encoders.py [--frames 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from bench.sources import real_frames
from services.worker.encoder import make_encoder

CANDIDATES = [("fpng", 0), ("cv2", 1), ("cv2", 3)]


def measure(width: int, height: int, frames: int, repeats: int) -> list[str]:
    """One table row per encoder at this resolution: median ms/frame and mean size."""
    pixels = real_frames(width, height, frames)
    rows = []
    for name, level in CANDIDATES:
        encode = make_encoder(name, level)
        runs = []
        sizes = []
        for _ in range(repeats):
            started = time.perf_counter()
            sizes = [len(encode(frame)) for frame in pixels]
            runs.append((time.perf_counter() - started) / len(pixels) * 1000)
        label = name if name == "fpng" else f"cv2 level {level}"
        for frame in pixels[:2]:
            decoded = cv2.imdecode(np.frombuffer(encode(frame), np.uint8), cv2.IMREAD_UNCHANGED)
            assert decoded is not None
            assert np.array_equal(decoded, frame), f"{label} is not lossless"
        rows.append(
            f"| {width}x{height} | {label} | {statistics.median(runs):.1f} | "
            f"{min(runs):.1f}-{max(runs):.1f} | {statistics.mean(sizes) / 1e6:.2f} |"
        )
    return rows


def main() -> None:
    """Print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print("| resolution | encoder | median ms/frame | min-max | MB/frame |")
    print("|---|---|---|---|---|")
    for width, height in ((1280, 720), (1920, 1080)):
        for row in measure(width, height, args.frames, args.repeats):
            print(row)


if __name__ == "__main__":
    main()
