"""The encoder's settings as a worker process runs them, in processes of the test's own."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Counts the process's threads, encodes a few 1080p frames with fpng (cvtColor, then fpng),
# and counts them again.
ENCODE_AND_COUNT_THREADS = """
import os, sys
import numpy as np
from services.worker import encoder
if sys.argv[1] == "single":
    encoder.single_threaded_opencv()
encode = encoder.make_encoder("fpng")
frame = np.random.default_rng(1).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
before = len(os.listdir("/proc/self/task"))
for _ in range(3):
    encode(frame)
print(before, len(os.listdir("/proc/self/task")))
"""


def threads_started_by_encoding(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", ENCODE_AND_COUNT_THREADS, mode],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    before, after = (int(count) for count in done.stdout.split()[-2:])
    return after - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_a_worker_encodes_on_its_own_thread_without_opencvs_pool() -> None:
    # The contrast shows the check can fail: by default OpenCV's pool starts its threads.
    assert threads_started_by_encoding("default") > 0
    assert threads_started_by_encoding("single") == 0
