"""The benchmarks still run: each in a tiny version, so `make bench` does not rot unseen.

Their figures mean nothing at this size and are not checked; docs/benchmarks.md has the
real runs. wrk (bench.api_load) is not installed by CI, so that one is left out.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_docker_files import ROOT

pytestmark = pytest.mark.e2e

CAPACITY = (
    "capacity",
    "--size",
    "320x240",
    "--max-cameras",
    "1",
    "--seconds",
    "4",
    "--warmup",
    "1",
)
SMOKE = [
    ("encoders", "--frames", "2", "--repeats", "1"),
    ("ingest", "--frames", "20", "--runs", "1"),
    ("latency", "--events", "1", "--spacing", "0", "--floor-runs", "1"),
    ("naive", "--events", "1"),
    CAPACITY,
    (*CAPACITY, "--frame-format", "yuv"),
    ("pixel_formats", "--resolutions", "720", "--frames", "20", "--keep", "10", "--runs", "1"),
]


@pytest.mark.parametrize("command", SMOKE, ids=[command[0] for command in SMOKE])
def test_a_benchmark_runs_and_prints_its_table(command: tuple[str, ...]) -> None:
    """The benchmark exits 0 and prints a markdown table with at least one row."""
    name, *args = command
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) >= 3, result.stdout  # header, separator, a row
