"""The README documents every setting, and its commands work as printed."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from services.kernel.settings import Settings
from services.runtime.redisserver import RedisServer
from tests.support.processes import Service, start_worker
from tests.support.servers import Servers, base_settings
from tests.support.videos import write_video
from tests.support.waiting import wait_buffered, wait_final

README = Path(__file__).parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    """Each field of Settings appears as its SCO_* variable in the README."""
    text = README.read_text()
    missing = [
        f"SCO_{name.upper()}"
        for name in Settings.model_fields
        if f"`SCO_{name.upper()}`" not in text
    ]
    assert missing == []


def readme_curls() -> list[str]:
    """Every curl command in the README's shell blocks that talks to the local API, joined
    across its continuation lines and its quoted line breaks."""
    commands, current = [], ""
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.DOTALL):
        for line in block.splitlines():
            if not current and not line.startswith("curl "):
                continue
            current += line.removesuffix("\\") + ("\n" if not line.endswith("\\") else " ")
            if line.endswith("\\") or not _complete(current):
                continue
            if "127.0.0.1:8000" in current and "$" not in current:
                commands.append(current.strip())
            current = ""
    return commands


def _complete(command: str) -> bool:
    """Whether a shell command's quotes are all closed."""
    try:
        shlex.split(command, comments=True)
    except ValueError:
        return False
    return True


@pytest.mark.e2e
def test_the_readme_curl_examples_work_as_printed(
    tmp_path: Path, api_factory: Callable[[Settings], httpx.Client]
) -> None:
    """Each curl line of the README, run by curl against a live stack, gets a 2xx answer."""
    with (
        RedisServer(tmp_path / "frames", name="frames") as frames,
        RedisServer(tmp_path / "broker", persistent=True, name="broker") as broker,
    ):
        settings = base_settings(
            Servers(frames, broker), tmp_path / "out", camera_id="lane-1", frames=30,
            source=str(write_video(tmp_path / "lane.avi", frames=250)),
        )  # fmt: skip
        client = api_factory(settings)
        capture = Service("capture", settings, tmp_path / "capture.log")
        worker = start_worker(settings, tmp_path / "worker.log")
        wait_buffered(client, 30)
        answers: list[str] = []
        base = str(client.base_url).rstrip("/")
        for printed in readme_curls():
            command = printed.replace("http://127.0.0.1:8000", base)
            if answers:  # the README's placeholder for a recording ID: the first one answered
                first = json.loads(answers[0])["recording_id"]
                if "3f0c…e1/" in command:  # its files: once it is written
                    wait_final(client, first)
                command = command.replace("3f0c…e1", first)
            result = subprocess.run(
                [*shlex.split(command, comments=True), "-w", "\n%{http_code}"],
                capture_output=True, text=True, timeout=30, check=False, cwd=tmp_path,
            )  # fmt: skip
            body, _, code = result.stdout.rpartition("\n")
            assert code.startswith("2"), f"{command}\n-> {code} {body}"
            answers.append(body)
        worker.stop()
        capture.stop()
    assert len(answers) >= 8
