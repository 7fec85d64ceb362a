"""Completion webhooks end to end: real capture, worker, beat and notifier processes, the API,
and a real HTTP receiver on this machine that fails, hangs, or accepts as the test says."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.kernel.settings import Settings, settings_env
from services.runtime.redisserver import RedisServer, free_port
from services.webhooks.delivery import SIGNATURE_HEADER, verify
from tests.support.processes import Service, start_worker
from tests.support.servers import Servers, base_settings
from tests.support.waiting import wait_buffered, wait_final, wait_until

pytestmark = pytest.mark.e2e

SECRET = "whsec-a-long-enough-test-secret"  # noqa: S105  # the test receiver's
ApiFactory = Callable[[Settings], httpx.Client]
CaptureFactory = Callable[[Settings], Service]


@dataclass
class Receiver:
    """The cashier system's back end: answers each POST as `answer` says, and keeps them."""

    answer: Callable[[dict[str, Any], int], int | None]  # (body, try number) -> status / hang
    received: list[tuple[dict[str, Any], bytes, dict[str, str], int]] = field(default_factory=list)
    tries: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[dict[str, Any]]:
        """Bodies answered 2xx."""
        return [body for body, _, _, status in self.received if status < 300]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver(answer=lambda body, number: 200)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            body = json.loads(raw)
            with state.lock:
                number = state.tries.get(body["recording_id"], 0) + 1
                state.tries[body["recording_id"]] = number
            status = state.answer(body, number)
            if status is None:  # hang past the sender's timeout, then drop the connection
                time.sleep(3)
                return
            with state.lock:
                state.received.append((body, raw, dict(self.headers), status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/hooks/sco"
    server.shutdown()
    server.server_close()


@pytest.fixture
def state_store(tmp_path: Path) -> Iterator[RedisServer]:
    """A state store of this test's own: its outbox holds only its own recordings."""
    server = RedisServer(tmp_path / "state", name="webhooks-state").start()
    yield server
    server.stop()


def start_store(
    servers: Servers, state_store: RedisServer, tmp_path: Path, video: Path, url: str,
    api_factory: ApiFactory, capture_factory: CaptureFactory, **overrides: Any,
) -> tuple[Settings, httpx.Client]:  # fmt: skip
    settings = base_settings(
        servers, tmp_path / "recordings", broker_url=state_store.url, source=str(video),
        webhooks=[{"url": url, "secret": SECRET}], webhook_interval=0.3, webhook_backoff=0.3,
        public_url="http://recorder.store.test:8000", **overrides,
    )  # fmt: skip
    capture_factory(settings)
    start_worker(settings, tmp_path / "worker.log")
    Service("beat", settings, tmp_path / "beat.log")
    Service("notifier", settings, tmp_path / "notifier.log").wait_for_log(" ready.")
    client = api_factory(settings)
    wait_buffered(client, settings.frames)
    return settings, client


def test_a_receiver_that_fails_three_times_gets_one_signed_delivery_per_recording(
    servers: Servers, state_store: RedisServer, tmp_path: Path, video: Path,
    receiver: tuple[Receiver, str], api_factory: ApiFactory, capture_factory: CaptureFactory,
) -> None:  # fmt: skip
    state, url = receiver
    state.answer = lambda body, number: 503 if number <= 3 else 200
    _, client = start_store(servers, state_store, tmp_path, video, url, api_factory,
                            capture_factory)  # fmt: skip
    ids = [
        client.post("/v1/events", json={"transaction_id": f"T-{n}", "metadata": {"sku": n}}).json()[
            "recording_id"
        ]
        for n in (1, 2)
    ]
    recordings = {recording_id: wait_final(client, recording_id) for recording_id in ids}
    wait_until(lambda: len(state.accepted()) >= 2, 60, "two accepted deliveries")
    time.sleep(2)  # time enough for a duplicate to show up, if one were sent
    accepted = state.accepted()
    assert sorted(body["recording_id"] for body in accepted) == sorted(ids)
    assert state.tries == {recording_id: 4 for recording_id in ids}
    for body, raw, headers, status in state.received:
        assert verify(SECRET.encode(), raw, headers[SIGNATURE_HEADER]), headers
        assert not verify(b"another-secret-entirely", raw, headers[SIGNATURE_HEADER])
        if status == 200:
            recording = recordings[body["recording_id"]]
            assert body["status"] == recording["status"] == "complete"
            assert body["frames_saved"] == recording["frames_saved"]
            assert body["transaction_id"] == recording["transaction_id"]
            assert body["metadata"] == {"sku": int(body["transaction_id"][2:])}
            assert body["links"]["download"] == (
                f"http://recorder.store.test:8000/v1/recordings/{body['recording_id']}/download"
            )
    metrics = client.get("/metrics").text
    assert 'sco_webhook_deliveries_total{outcome="delivered",webhook="' in metrics
    counted = {
        line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("sco_webhook_deliveries_total{")
    }
    assert counted == {"delivered": 2, "retried": 6}
    assert "sco_webhook_pending 0.0" in metrics


def test_a_receiver_that_never_answers_ends_in_the_dead_letters_and_can_be_replayed(
    servers: Servers, state_store: RedisServer, tmp_path: Path, video: Path,
    receiver: tuple[Receiver, str], api_factory: ApiFactory, capture_factory: CaptureFactory,
) -> None:  # fmt: skip
    state, url = receiver
    state.answer = lambda body, number: None  # hangs
    settings, client = start_store(
        servers, state_store, tmp_path, video, url, api_factory, capture_factory,
        webhook_timeout=0.5, webhook_give_up_after=2.0,
    )  # fmt: skip
    recording_id = client.post("/v1/events", json={"transaction_id": "T-9"}).json()["recording_id"]
    assert wait_final(client, recording_id)["status"] == "complete"  # never held up by it
    cli = [sys.executable, "-m", "services.cli", "webhooks"]
    env = {**settings_env(settings), "PATH": "/usr/bin:/bin"}

    def failed() -> str:
        listed = subprocess.run([*cli, "failed"], env=env, capture_output=True, text=True,
                                check=True)  # fmt: skip
        return listed.stdout

    wait_until(lambda: recording_id in failed(), 60, "a dead letter")
    listed = failed()
    assert url in listed
    assert "ReadTimeout" in listed
    tries = state.tries[recording_id]
    assert tries >= 2  # retried before it gave up

    state.answer = lambda body, number: 200
    replay = subprocess.run([*cli, "replay", "--all"], env=env, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert f"replaying {recording_id}:" in replay.stdout
    wait_until(lambda: len(state.accepted()) == 1, 30, "the replayed delivery")
    assert state.accepted()[0]["recording_id"] == recording_id
    assert recording_id not in failed()
    again = subprocess.run([*cli, "replay", "nope:0"], env=env, capture_output=True,
                           text=True, check=False)  # fmt: skip
    assert again.returncode != 0
    assert "not in the failed list: nope:0" in again.stderr
