"""The `sco-recorder` command as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from services.runtime.redisserver import free_port
from tests.support.videos import write_video
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "services.cli"]


def clean_env() -> dict[str, str]:
    """The environment without any SCO_* or REDIS_URL the machine may have."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SCO_") and key != "REDIS_URL"
    }


def run_cli(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One `sco-recorder` command run to its end, its output captured."""
    return subprocess.run(
        [*CLI, *argv], env=env or clean_env(), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def test_up_records_a_video_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """`up` without a Redis URL runs everything, records what `send` sends, and stops on a
    terminal's Ctrl-C (SIGINT to the whole group) with its Redis outliving every service."""
    video = write_video(tmp_path / "lane.avi", frames=200)
    port = free_port()
    output = tmp_path / "recordings"
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [*CLI, "up", "--source", str(video), "--output", str(output), "--port", str(port),
         "--frames", "5"],
        env=clean_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops everything" not in (tmp_path / "up.log").read_text():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "up never became ready"
            time.sleep(0.1)
        while httpx.get(f"http://127.0.0.1:{port}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "camera never became ready"
            time.sleep(0.1)
        sent = run_cli(["send", "--url", f"http://127.0.0.1:{port}", "--count", "3"])
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.count(" complete 5/5 frames") == 3, sent.stdout
        # Beat and the API run on threads of `up` itself (the API just answered `send`);
        # beat's probe sees the prune passes it sends.
        children = psutil.Process(up.pid).children(recursive=True)
        assert not any({"beat", "api"} & set(child.cmdline()) for child in children)
        urls = json.loads((output / ".redis" / "urls.json").read_text())
        stack_env = {**clean_env(), "SCO_REDIS_URL": urls["redis_url"],
                     "SCO_BROKER_URL": urls["broker_url"]}  # fmt: skip
        wait_until(
            lambda: "last prune pass" in run_cli(["check", "beat"], stack_env).stdout,
            timeout=30, what="beat's first prune pass",
        )  # fmt: skip
        # `prune` finds the stack's embedded Redis by --output.
        pruned = run_cli(["prune", "--dry-run", "--output", str(output)])
        assert pruned.returncode == 0, pruned.stderr
        assert "would delete 0 recordings" in pruned.stdout
        children = psutil.Process(up.pid).children(recursive=True)
        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert up.wait(timeout=30) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
    finally:
        if up.poll() is None:
            up.kill()
        log.close()
    assert len(list(output.glob("*/*/*/metadata.json"))) == 3
    printed = (tmp_path / "up.log").read_text()
    assert str(output.resolve()) in printed
    assert "Connection refused" not in printed  # no service outlived the embedded Redis


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["capture", "--frames", "0", "--redis-url", "redis://127.0.0.1:1/0"], "SCO_FRAMES"),
        (["api", "--camera-id", "../x", "--redis-url", "redis://127.0.0.1:1/0"], "SCO_CAMERA_ID"),
        (["worker"], "SCO_REDIS_URL"),
        (["up", "--source", "/nonexistent/lane.mp4"], "/nonexistent/lane.mp4"),
        (
            ["up", "--redis-url", "redis://127.0.0.1:1/0", "--port", str(free_port())],
            "beat cannot reach the broker",
        ),
    ],
)
def test_bad_configuration_stops_at_start_with_a_named_reason(
    argv: list[str], message: str
) -> None:
    """A wrong setting or source fails fast, exit code non-zero, naming what to fix."""
    result = subprocess.run(
        [*CLI, *argv], env=clean_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_up_leaves_no_redis_behind_when_the_second_server_cannot_start(tmp_path: Path) -> None:
    """The broker's folder is unusable: `up` says so, and the frames server it started is gone."""
    output = tmp_path / "recordings"
    (output / ".redis").mkdir(parents=True)
    (output / ".redis" / "broker").write_text("not a folder")
    video = write_video(tmp_path / "lane.avi", frames=50)
    result = subprocess.run(
        [*CLI, "up", "--source", str(video), "--output", str(output), "--port", str(free_port())],
        env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "broker-redis cannot use" in result.stderr
    assert processes_naming(output) == []


def test_up_stops_with_the_reason_when_its_api_port_is_taken(tmp_path: Path) -> None:
    """The API thread cannot listen: `up` names it, stops everything it started, exit 1."""
    output = tmp_path / "recordings"
    video = write_video(tmp_path / "lane.avi", frames=50)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*CLI, "up", "--source", str(video), "--output", str(output), "--port", str(port)],
            env=clean_env(), capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
    assert result.returncode != 0
    assert "api did not start" in result.stderr
    assert "address already in use" in result.stderr
    assert processes_naming(output) == []


def processes_naming(output: Path) -> list[list[str]]:
    """Command lines of the processes still running with `output` in them (its Redis)."""
    return [
        process.info["cmdline"]
        for process in psutil.process_iter(["cmdline"])
        if str(output) in " ".join(process.info["cmdline"] or [])
    ]
