"""API: events/s answered 202 at 32 concurrent connections, with the capture running.

The load generator is wrk (Debian's `wrk`) with a Lua script posting a JSON event; the API
runs as `sco-recorder api` with 1 and then 2 uvicorn processes (SCO_API_WORKERS), the
capture records the 720p clip at 30 fps, and no worker runs (jobs wait in the broker, as in
a burst). Each figure is the median of `--runs` runs of `--seconds` each.

Run: .venv/bin/python -m bench.api_load [--runs 3] [--seconds 10] [--api-workers 1 2]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
from argparse import Namespace
from pathlib import Path

from bench.sources import write_real_video
from bench.stack import running, wait_for_api, wait_for_frames

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"metadata": {"sku": "4006381333931", "lane": 1}}'
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse(output: str) -> tuple[float, float, float, int]:
    """Requests/s, p50 and p99 in ms, and non-2xx answers, from wrk --latency output."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latencies = {
        percent: float(value) * UNITS[unit]
        for percent, value, unit in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)", output)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rate, latencies["50"], latencies["99"], int(errors.group(1)) if errors else 0


def measure(
    wrk: str, work: Path, video: Path, script: Path, *, api_workers: int, args: Namespace
) -> str:
    """One table row: the stack with `api_workers` API processes under `args.runs` wrk runs."""
    results = []
    with running(work, video, ("capture", "api"), api_workers=api_workers) as settings:
        wait_for_frames(settings, 30)
        wait_for_api(settings)
        url = f"http://127.0.0.1:{settings.port}/v1/events"
        for _ in range(args.runs):
            output = subprocess.run(
                [wrk, "-t2", "-c32", f"-d{args.seconds}s", "--latency", "-s", str(script), url],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            results.append(parse(output))
    return (
        f"| {api_workers} | 32 | {statistics.median(r[0] for r in results):.0f} | "
        f"{statistics.median(r[1] for r in results):.1f} | "
        f"{statistics.median(r[2] for r in results):.1f} | {sum(r[3] for r in results)} | "
        f"{len(results)} |"
    )


def main() -> None:
    """Print a markdown table: one row per number of API processes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--api-workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="sco-bench-") as folder:
        work = Path(folder)
        video = write_real_video(work / "lane.avi", 1280, 720)
        script = work / "post.lua"
        script.write_text(LUA)
        rows = [
            measure(wrk, work, video, script, api_workers=workers, args=args)
            for workers in args.api_workers
        ]
    print("| API processes | connections | events/s (202) | p50 ms | p99 ms | non-2xx | runs |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
