"""A short `make chaos`: processes killed at random under steady traffic, every goal checked.

The full run (5 minutes, every kind of fault) is in docs/reliability.md; this one kills a
worker, the broker Redis and the frame Redis over 40 s, with events over HTTP and MQTT.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_docker_files import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.reliability, pytest.mark.timeout(400)]


def test_no_accepted_event_is_lost_while_processes_are_killed() -> None:
    """Every accepted event ends final, complete ones with exact frames, no stray file."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--duration", "40", "--seed", "11", "--mqtt",
         "--kinds", "worker,broker-redis,frames-redis,api", "--settle", "300"],
        cwd=ROOT, capture_output=True, text=True, timeout=380, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "PASSED: every goal met" in result.stdout
