"""The API over real HTTP: bad input is refused with a reason and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import redis

from services.kernel import keys
from services.kernel.settings import Settings
from services.runtime.redisserver import RedisServer, free_port
from tests.support.servers import Servers, base_settings
from tests.support.waiting import wait_final

ApiFactory = Callable[[Settings], httpx.Client]

BAD_BODIES: list[tuple[str, bytes]] = [
    ("malformed JSON", b'{"camera_id": '),
    ("not an object", b"[1, 2, 3]"),
    ("wrong type", b'{"frames_before": "ten"}'),
    ("metadata not an object", b'{"metadata": [1, 2]}'),
    ("unknown field", b'{"camera": "lane-1"}'),
    ("unknown camera", b'{"camera_id": "lane-99"}'),
    ("path traversal in camera", b'{"camera_id": "../../etc"}'),
    ("slash in transaction", b'{"transaction_id": "T/../../x"}'),
    ("absurd transaction", b'{"transaction_id": "' + b"x" * 500 + b'"}'),
    ("zero frames", b'{"frames_before": 0}'),
    ("more frames than buffered", b'{"frames_before": 11}'),
    ("negative frames after", b'{"frames_after": -1}'),
    ("naive event time", b'{"event_time": "2026-01-01T10:00:00"}'),
    ("not a time", b'{"event_time": "yesterday"}'),
    ("lone surrogate in metadata", b'{"metadata": {"note": "\\ud800"}}'),
    ("lone surrogate as a key", b'{"metadata": {"\\udc00": 1}}'),
    ("metadata nested 400 levels", b'{"metadata": ' + b'{"a": ' * 400 + b"1" + b"}" * 401),
    ("metadata nested 5000 levels", b'{"metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
]


def assert_nothing_written(client: httpx.Client, settings: Settings, servers: Servers) -> None:
    """No recording listed, no folder, no pin."""
    assert client.get("/v1/recordings", params={"camera_id": settings.camera_id}).json() == []
    assert not (settings.output_dir / settings.camera_id).exists()
    frames = redis.Redis.from_url(servers.frames.url)
    assert frames.zcard(keys.pins(settings.camera_id)) == 0


@pytest.mark.parametrize(("case", "body"), BAD_BODIES, ids=[case for case, _ in BAD_BODIES])
def test_bad_bodies_get_a_4xx_with_a_reason_and_write_nothing(
    case: str,
    body: bytes,
    settings: Settings,
    servers: Servers,
    api_factory: ApiFactory,
) -> None:
    """Each kind of bad body is refused with 422 and a detail, and leaves no trace."""
    client = api_factory(settings)
    answer = client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]
    assert_nothing_written(client, settings, servers)


def test_an_oversized_body_gets_413_and_writes_nothing(
    settings: Settings, servers: Servers, api_factory: ApiFactory
) -> None:
    """Bodies over max_body_bytes are refused, whether declared or streamed without a length."""
    client = api_factory(settings)
    huge = b'{"metadata": {"blob": "' + b"x" * (settings.max_body_bytes + 10) + b'"}}'
    declared = client.post("/v1/events", content=huge)

    def chunks() -> object:
        for start in range(0, len(huge), 4096):
            yield huge[start : start + 4096]

    streamed = client.post("/v1/events", content=chunks())  # type: ignore[arg-type]  # a generator streams
    assert declared.status_code == streamed.status_code == 413
    assert "larger than" in streamed.json()["detail"]
    assert_nothing_written(client, settings, servers)


@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/plain", None])
def test_a_body_that_is_not_utf8_gets_422_not_500(
    content_type: str | None, settings: Settings, servers: Servers, api_factory: ApiFactory
) -> None:
    """Bytes that are neither JSON nor UTF-8, under any content type: 422, nothing written."""
    client = api_factory(settings)
    headers = {"Content-Type": content_type} if content_type else {}
    answer = client.post("/v1/events", content=b"S\x9e\xc6\n\xde\xb8\x87", headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]
    assert_nothing_written(client, settings, servers)


def test_a_hostile_idempotency_key_is_refused(
    settings: Settings, servers: Servers, api_factory: ApiFactory
) -> None:
    """An Idempotency-Key that could smuggle a Redis key or a path gets 422."""
    client = api_factory(settings)
    answer = client.post("/v1/events", json={}, headers={"Idempotency-Key": "a b:../*"})
    assert answer.status_code == 422
    assert_nothing_written(client, settings, servers)


def test_a_trusted_event_time_too_old_or_in_the_future_is_refused(
    servers: Servers, recordings_root: Path, api_factory: ApiFactory
) -> None:
    """With trust_event_time, a moment whose frames are gone, or not yet due, gets 422."""
    settings = base_settings(servers, recordings_root, trust_event_time=True)
    client = api_factory(settings)
    now = datetime.now(tz=timezone.utc)
    for moment in (now - timedelta(minutes=5), now + timedelta(minutes=5)):
        answer = client.post("/v1/events", json={"event_time": moment.isoformat()})
        assert answer.status_code == 422, answer.text
        assert "event_time" in answer.json()["detail"]
    assert_nothing_written(client, settings, servers)


def test_a_store_that_is_down_gets_503_with_retry_after(
    servers: Servers, recordings_root: Path, api_factory: ApiFactory
) -> None:
    """With Redis unreachable the API asks the client to retry; it never answers 500."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = base_settings(servers, recordings_root, redis_url=dead, broker_url=dead)
    client = api_factory(settings)
    answer = client.post("/v1/events", json={})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("command", [("CONFIG", "SET", "maxmemory", "1"), ("REPLICAOF",)])
def test_a_store_that_is_full_or_read_only_gets_503_with_retry_after(
    command: tuple[str, ...], tmp_path: Path, recordings_root: Path, api_factory: ApiFactory
) -> None:
    """OOM (maxmemory reached) and READONLY (a replica) replies mean "not now": 503, not 500."""
    with RedisServer(tmp_path / "redis", name="full") as server:
        settings = base_settings(Servers(server, server), recordings_root)
        client = api_factory(settings)
        store = redis.Redis.from_url(server.url)
        if command == ("REPLICAOF",):
            command = ("REPLICAOF", "127.0.0.1", str(free_port()))  # a master that never answers
        store.execute_command(*command)  # type: ignore[no-untyped-call]  # redis-py leaves it bare
        answer = client.post("/v1/events", json={})
        store.close()
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"]


def test_a_before_without_a_time_zone_is_refused(
    settings: Settings, api_factory: ApiFactory
) -> None:
    """`before` must say its offset: a naive time is ambiguous, 422 rather than 500."""
    client = api_factory(settings)
    answer = client.get("/v1/recordings", params={"before": "2026-11-27T10:00:00"})
    assert answer.status_code == 422, answer.text
    aware = client.get("/v1/recordings", params={"before": "2026-11-27T10:00:00+01:00"})
    assert aware.status_code == 200


@pytest.mark.e2e
@pytest.mark.usefixtures("session_worker")
def test_recordings_are_listed_newest_first_and_paged(
    settings: Settings, api_factory: ApiFactory
) -> None:
    """GET /v1/recordings lists a camera's recordings newest first; `before` pages back."""
    client = api_factory(settings)
    ids = [client.post("/v1/events", json={}).json()["recording_id"] for _ in range(3)]
    listed = client.get("/v1/recordings", params={"camera_id": settings.camera_id}).json()
    assert [item["recording_id"] for item in listed] == ids[::-1]
    page = client.get(
        "/v1/recordings",
        params={"camera_id": settings.camera_id, "limit": 1, "before": listed[0]["received_at"]},
    ).json()
    assert [item["recording_id"] for item in page] == [ids[1]]
    assert client.get("/v1/recordings/0123456789abcdef0123456789abcdef").status_code == 404
    assert client.get("/v1/recordings/..%2F..%2Fetc").status_code in {404, 422}


@pytest.mark.e2e
@pytest.mark.usefixtures("session_worker")
def test_an_event_without_frames_ends_failed_with_a_reason(
    settings: Settings, api_factory: ApiFactory
) -> None:
    """No capture running: the event is still accepted and ends in a visible final state."""
    client = api_factory(settings)
    answer = client.post("/v1/events", json={"transaction_id": "T-nocam", "metadata": {"a": 1}})
    assert answer.status_code == 202
    recording = wait_final(client, answer.json()["recording_id"])
    assert recording["status"] == "failed"
    assert "source had just started or was not running" in str(recording["reason"])
    assert recording["frames_saved"] == 0


def test_cameras_and_readiness_report_a_camera_without_frames(
    settings: Settings, api_factory: ApiFactory
) -> None:
    """A configured camera that never sent a frame shows as unknown and makes /readyz fail."""
    client = api_factory(settings)
    cameras = client.get("/v1/cameras").json()
    assert cameras == [
        {
            "camera_id": settings.camera_id,
            "state": "unknown",
            "source": None,
            "fps": 0.0,
            "width": 0,
            "height": 0,
            "last_frame_age_s": None,
            "buffer_length": 0,
            "buffer_cap": 0,
            "frames_read": 0,
            "late_frames": 0,
            "dropped_frames": 0,
            "last_error": None,
        }
    ]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert settings.camera_id in ready.json()["problems"][0]
    assert "sco_events_accepted" in client.get("/metrics").text
