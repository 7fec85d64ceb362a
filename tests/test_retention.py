"""Retention end to end: real capture, API, worker and beat processes, a broker of the test's
own, and small real filesystems (tmpfs) to fill."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from services.kernel.contracts import utcnow
from services.kernel.settings import Settings
from services.runtime.redisserver import RedisServer
from services.stores.retention import RetentionStore
from services.stores.storage import Storage
from services.worker.prune import Pruner, PruneReport
from tests.support.disks import tmpfs
from tests.support.frames import load_manifest
from tests.support.processes import Service, start_worker
from tests.support.servers import Servers, base_settings
from tests.support.waiting import wait_buffered, wait_final, wait_until

pytestmark = pytest.mark.e2e

ApiFactory = Callable[[Settings], httpx.Client]
CaptureFactory = Callable[[Settings], Service]

# A job's deadline is what keeps a fresh recording from every rule: short ones (about 25 s
# after receipt) let these tests see deletions without waiting ten minutes.
SHORT_DEADLINES: dict[str, Any] = {
    "max_delay": 1.0,
    "task_time_limit": 10,
    "worker_lost_after": 3.0,
    "worker_heartbeat": 1.0,
}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A persistent (AOF) state store of this test's own: its retention sees only its own."""
    server = RedisServer(tmp_path / "broker", persistent=True, name="retention-broker").start()
    yield server
    server.stop()


def lane_settings(servers: Servers, broker: RedisServer, output: Path, video: Path,
                  **overrides: Any) -> Settings:  # fmt: skip
    return base_settings(servers, output, broker_url=broker.url, source=str(video), **overrides)


def start_lane(
    settings: Settings, tmp_path: Path, api_factory: ApiFactory, capture_factory: CaptureFactory,
    *, beat: bool = False,
) -> httpx.Client:  # fmt: skip
    """Capture, worker (and beat) processes, and the API; ready once frames flow."""
    capture_factory(settings)
    start_worker(settings, tmp_path / "worker.log")
    if beat:
        Service("beat", settings, tmp_path / "beat.log")
    client = api_factory(settings)
    wait_buffered(client, settings.frames)
    return client


def post(client: httpx.Client, **body: Any) -> str:
    answer = client.post("/v1/events", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["recording_id"])


def pruner(settings: Settings, broker: RedisServer, later: timedelta, **overrides: Any) -> Pruner:
    """A prune pass in this process, its clock `later` ahead, on the real state and folders."""
    client = redis.Redis.from_url(broker.url)
    return Pruner(
        settings.model_copy(update=overrides),
        RetentionStore(client),
        Storage(settings.output_dir.resolve()),
        clock=lambda: utcnow() + later,
    )


def run_alone(prune: Pruner) -> PruneReport:
    """A pass, run again while another holds the lock: the worker's own, which the API asks
    for when a hold is released while the last pass found the disk full."""
    reports = []

    def ran() -> bool:
        reports.append(prune.run())
        return reports[-1].skipped is None

    wait_until(ran, timeout=60, what="the prune lock")
    return reports[-1]


def test_holds_survive_every_rule_and_a_restart_and_deleted_recordings_answer_410(
    servers: Servers,
    broker: RedisServer,
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
) -> None:
    settings = lane_settings(servers, broker, tmp_path / "recordings", video)
    client = start_lane(settings, tmp_path, api_factory, capture_factory)
    plain = post(client, transaction_id="T-1")
    held_at_event = post(client, transaction_id="T-2", hold=True)
    held_later = post(client, transaction_id="T-3")
    recordings: dict[str, dict[str, Any]] = {
        recording_id: wait_final(client, recording_id)
        for recording_id in (plain, held_at_event, held_later)
    }
    assert {recording["status"] for recording in recordings.values()} == {"complete"}
    assert recordings[held_at_event]["hold"]["by"] == "event"
    assert manifest_of(recordings[held_at_event])["hold"]["reason"] == "held from its event"

    answer = client.put(
        f"/v1/recordings/{held_later}/hold", json={"reason": "case 4711", "by": "lp-anna"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["hold"]["reason"] == "case 4711"
    wait_until(
        lambda: (manifest_of(recordings[held_later]).get("hold") or {}).get("by") == "lp-anna",
        what="the hold in metadata.json",
    )
    assert client.put(f"/v1/recordings/{held_later}/hold", json={"reason": ""}).status_code == 422

    # Holds outlive a restart of the state store (AOF) and of the API.
    broker.stop()
    broker.start(port=broker.port)
    restarted = api_factory(settings)
    assert restarted.get(f"/v1/recordings/{held_later}").json()["hold"]["by"] == "lp-anna"

    # Every rule at once, 31 days on: only the recording not held goes.
    sizes = {
        recording_id: int(str(recordings[recording_id]["bytes"])) for recording_id in recordings
    }
    assert all(size > 0 for size in sizes.values())
    report = run_alone(
        pruner(settings, broker, timedelta(days=31), retention_max_bytes=1, min_free_bytes=10**15)
    )
    assert [(d.recording_id, d.rule, d.size) for d in report.deletions] == [
        (plain, "age", sizes[plain])
    ]
    assert not Path(str(recordings[plain]["path"])).exists()
    gone = restarted.get(f"/v1/recordings/{plain}")
    assert gone.status_code == 410
    assert "deleted by retention on" in gone.json()["detail"]
    assert "older than 30 days (SCO_RETENTION_DAYS)" in gone.json()["detail"]
    assert (
        restarted.put(
            f"/v1/recordings/{plain}/hold", json={"reason": "too late", "by": "lp"}
        ).status_code
        == 410
    )
    for recording_id in (held_at_event, held_later):
        assert Path(str(recordings[recording_id]["path"])).is_dir()

    # Released, a recording is subject to the rules again: here the size cap. The pass
    # above found the disk "full" (SCO_MIN_FREE_BYTES of 1 PB), so the release also asks the
    # worker for a pass, which may hold the lock when this one starts.
    released = restarted.delete(
        f"/v1/recordings/{held_later}/hold", params={"reason": "case closed", "by": "lp-anna"}
    )
    assert released.status_code == 200, released.text
    assert released.json()["hold"] is None
    assert released.json()["released"]["reason"] == "case closed"
    report = run_alone(
        pruner(settings, broker, timedelta(hours=1), retention_max_bytes=sizes[held_at_event])
    )
    assert [(d.recording_id, d.rule) for d in report.deletions] == [(held_later, "size")]
    assert restarted.get(f"/v1/recordings/{held_later}").status_code == 410
    assert restarted.get(f"/v1/recordings/{held_at_event}").status_code == 200
    listed = restarted.get("/v1/recordings", params={"camera_id": settings.camera_id}).json()
    assert [recording["recording_id"] for recording in listed] == [held_at_event]


@pytest.fixture
def lane_on_small_disk(
    servers: Servers,
    broker: RedisServer,
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: CaptureFactory,
) -> Iterator[Callable[..., tuple[httpx.Client, Path]]]:
    """A whole lane with beat, recording onto a tmpfs of `size` MiB that `ballast` MiB (not
    recordings: never deleted) already fill, pruned every second to keep `floor` MiB free."""
    with ExitStack() as mounts:

        def start(
            size: int, ballast: int, floor: int, **overrides: Any
        ) -> tuple[httpx.Client, Path]:
            disk = mounts.enter_context(tmpfs(tmp_path / "disk", size * 2**20))
            (disk / "ballast").write_bytes(b"\0" * (ballast * 2**20))
            settings = lane_settings(
                servers, broker, disk / "recordings", video, min_free_bytes=floor * 2**20,
                prune_interval=1.0, **SHORT_DEADLINES, **overrides,
            )  # fmt: skip
            client = start_lane(settings, tmp_path, api_factory, capture_factory, beat=True)
            return client, disk

        yield start


def test_a_full_disk_with_everything_held_answers_503_until_a_hold_is_released(
    lane_on_small_disk: Callable[..., tuple[httpx.Client, Path]],
) -> None:
    client, _disk = lane_on_small_disk(size=8, ballast=3, floor=4)
    held = []
    refused = None
    deadline = time.monotonic() + 60
    while refused is None:
        assert time.monotonic() < deadline, "the disk never filled"
        answer = client.post("/v1/events", json={"hold": True})
        if answer.status_code == 503:
            refused = answer
        else:
            assert answer.status_code == 202, answer.text
            held.append(answer.json()["recording_id"])
            time.sleep(0.1)
    assert "recordings disk" in refused.json()["detail"]
    assert "SCO_MIN_FREE_BYTES" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert any("recordings disk" in problem for problem in ready.json()["problems"])
    for recording_id in held:
        assert wait_final(client, recording_id)["status"] == "complete"

    for recording_id in held:
        answer = client.delete(
            f"/v1/recordings/{recording_id}/hold", params={"reason": "case closed", "by": "lp"}
        )
        assert answer.status_code == 200, answer.text
    # Deletable once past their deadlines (about 25 s here): then events are taken again.
    wait_until(lambda: client.post("/v1/events", json={}).status_code == 202, timeout=90,
               what="events accepted again")  # fmt: skip
    assert client.get("/readyz").status_code == 200
    gone = [recording_id for recording_id in held
            if client.get(f"/v1/recordings/{recording_id}").status_code == 410]  # fmt: skip
    assert gone, "recovering needed deletions"
    assert "SCO_MIN_FREE_BYTES" in client.get(f"/v1/recordings/{gone[0]}").json()["detail"]


def test_the_free_space_floor_holds_under_a_stream_of_events_that_never_stops(
    broker: RedisServer, lane_on_small_disk: Callable[..., tuple[httpx.Client, Path]]
) -> None:
    """Prune passes run while the worker writes: the oldest recordings go, no unfinished one
    is touched, every recording kept is whole, and nothing fails for want of space."""
    client, disk = lane_on_small_disk(size=24, ballast=8, floor=8, workers=2)
    posted: list[str] = []
    stop = threading.Event()

    def keep_posting() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=10) as poster:
            while not stop.is_set():
                answer = poster.post("/v1/events", json={"transaction_id": uuid.uuid4().hex})
                if answer.status_code == 202:
                    posted.append(answer.json()["recording_id"])
                stop.wait(0.2)

    poster = threading.Thread(target=keep_posting)
    poster.start()
    try:
        wait_until(lambda: _deleted(broker) >= 20, timeout=150, what="20 deletions")
        time.sleep(5)  # and the stream goes on over a few more passes
    finally:
        stop.set()
        poster.join()

    statuses: dict[str, int] = {}
    for recording_id in posted:
        answer = client.get(f"/v1/recordings/{recording_id}")
        if answer.status_code == 200:
            recording = wait_final(client, recording_id)
            assert recording["status"] == "complete", recording
            _assert_whole(recording)
        else:
            assert answer.status_code == 410, answer.text
            assert "SCO_MIN_FREE_BYTES" in answer.json()["detail"]
        statuses[recording_id] = answer.status_code
    gone = [recording_id for recording_id in posted if statuses[recording_id] == 410]
    kept = [recording_id for recording_id in posted if statuses[recording_id] == 200]
    assert len(gone) >= 20, statuses
    # Oldest first (give or take the few that two workers finish out of order).
    assert max(posted.index(recording_id) for recording_id in gone) < len(gone) + 4, statuses
    assert kept, "the newest recordings are kept"
    assert not list((disk / "recordings" / ".trash").iterdir())


def _deleted(broker: RedisServer) -> int:
    client = redis.Redis.from_url(broker.url)
    try:
        return sum(int(count) for count in client.hvals("sco:deletions"))
    finally:
        client.close()


def manifest_of(recording: dict[str, Any]) -> dict[str, Any]:
    """metadata.json of a final recording, with its folder as `path`."""
    return load_manifest(recording)


def _assert_whole(recording: dict[str, Any]) -> None:
    manifest = manifest_of(recording)
    path = Path(manifest["path"])
    for frame in manifest["frames"]:
        assert hashlib.sha256((path / frame["file"]).read_bytes()).hexdigest() == frame["sha256"]
