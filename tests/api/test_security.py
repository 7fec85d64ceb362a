"""Security: the API key, JSON-only Celery, limits, and secrets kept out of logs and answers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import SecretStr

from services.kernel import keys
from services.kernel.contracts import FINAL_STATUSES
from services.kernel.settings import Settings
from services.runtime.redisserver import RedisServer, free_port
from services.stores.taskqueue import make_celery
from tests.support.processes import Service, start_worker
from tests.support.servers import Servers, base_settings
from tests.support.waiting import wait_final, wait_until

ApiFactory = Callable[[Settings], httpx.Client]
API_KEY = "k3y-" + uuid.uuid4().hex
GUARDED = [
    ("POST", "/v1/events"),
    ("GET", "/v1/recordings"),
    ("GET", "/v1/cameras"),
    ("GET", f"/v1/recordings/{'0' * 32}"),
]


def test_every_v1_route_needs_the_api_key_when_one_is_set(
    settings: Settings, api_factory: ApiFactory
) -> None:
    """No or a wrong key: 401 and nothing written; the right key: 202. Health stays open."""
    client = api_factory(settings.model_copy(update={"api_key": SecretStr(API_KEY)}))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        for method, path in GUARDED:
            answer = client.request(method, path, json={}, headers=headers)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            assert API_KEY not in answer.text
    good = {"Authorization": f"Bearer {API_KEY}"}
    listed = client.get("/v1/recordings", params={"camera_id": settings.camera_id}, headers=good)
    assert listed.json() == []
    assert client.post("/v1/events", json={}, headers=good).status_code == 202
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in {200, 503}
    assert client.get("/metrics").status_code == 200


def test_metrics_can_require_the_key(settings: Settings, api_factory: ApiFactory) -> None:
    """With metrics_public off, /metrics needs the key like the /v1 routes."""
    guarded = settings.model_copy(update={"api_key": SecretStr(API_KEY), "metrics_public": False})
    client = api_factory(guarded)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200


def test_metadata_nested_too_deeply_is_refused(settings: Settings, api_factory: ApiFactory) -> None:
    """A metadata object nested past 16 levels gets 422 before anything is stored."""
    client = api_factory(settings)
    deep: dict[str, object] = {}
    for _ in range(20):
        deep = {"x": deep}
    answer = client.post("/v1/events", json={"metadata": deep})
    assert answer.status_code == 422
    assert "nested deeper" in answer.text


class Planted:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.e2e
@pytest.mark.usefixtures("session_worker")
def test_a_pickle_message_is_refused_and_harms_nothing(
    settings: Settings, session_worker: Service, api_factory: ApiFactory, tmp_path: Path
) -> None:
    """A job serialized with pickle is refused unread; the worker goes on with JSON jobs."""
    marker = tmp_path / "pwned"
    app = make_celery(settings)
    app.send_task(keys.RECORD_TASK, args=[Planted(marker)], serializer="pickle",
                  queue=keys.RECORD_QUEUE, task_id=uuid.uuid4().hex)  # fmt: skip
    client = api_factory(settings)
    after = client.post("/v1/events", json={}).json()["recording_id"]
    assert wait_final(client, after)["status"] in {status.value for status in FINAL_STATUSES}
    time.sleep(0.5)
    assert not marker.exists()
    assert "Refusing to deserialize untrusted content of type pickle" in session_worker.log()


@pytest.fixture
def guarded_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, str]]:
    """A Redis that wants a password, and the password."""
    password = "pw-" + uuid.uuid4().hex
    server = RedisServer(tmp_path / "guarded", options=("--requirepass", password)).start()
    yield server, password
    server.stop()


@pytest.mark.e2e
def test_a_redis_with_a_password_refuses_services_without_it(
    guarded_redis: tuple[RedisServer, str],
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: Callable[[Settings], Service],
) -> None:
    """Compose's Redis servers want a password: a service without it is refused, says so,
    and writes nothing."""
    server, password = guarded_redis
    url = f"redis://127.0.0.1:{server.port}/0"
    settings = base_settings(
        Servers(server, server), tmp_path / "out", redis_url=url, broker_url=url,
        source=str(video),
    )  # fmt: skip
    capture = capture_factory(settings)
    client = api_factory(settings)
    refused = client.post("/v1/events", json={})
    assert refused.status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "authenticat" in " ".join(ready.json()["problems"]).lower()
    wait_until(lambda: "authenticat" in capture.log().lower(), what="the capture refused")
    guarded = redis.Redis.from_url(f"redis://:{password}@127.0.0.1:{server.port}/0")
    assert guarded.dbsize() == 0
    guarded.close()


@pytest.mark.e2e
def test_secrets_never_reach_logs_or_answers(
    guarded_redis: tuple[RedisServer, str],
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: Callable[[Settings], Service],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Redis password, the API key and an RTSP source's password appear in no answer and
    in no service's log, heartbeat or error."""
    server, password = guarded_redis
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    rtsp_password = "cam-" + uuid.uuid4().hex
    settings = base_settings(
        Servers(server, server), tmp_path / "out", redis_url=url, broker_url=url,
        source=str(video), api_key=SecretStr(API_KEY), cameras=["lane-a", "lane-rtsp"],
        camera_id="lane-a",
    )  # fmt: skip
    capture = capture_factory(settings)
    # A camera whose stream is down: its failures show the source, never its password.
    rtsp = capture_factory(
        settings.model_copy(update={
            "camera_id": "lane-rtsp", "source_timeout": 0.5,
            "source": f"rtsp://admin:{rtsp_password}@127.0.0.1:{free_port()}/stream1",
        })
    )  # fmt: skip
    client = api_factory(settings)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    worker = start_worker(settings, tmp_path / "worker.log")
    answers = [client.post("/v1/events", json={}, headers={"Authorization": "Bearer nope"})]
    try:
        accepted = client.post("/v1/events", json={"camera_id": "lane-a"}, headers=auth)
        answers.append(accepted)
        client.headers.update(auth)
        wait_final(client, accepted.json()["recording_id"])
        wait_until(
            lambda: "admin:***@" in str(client.get("/v1/cameras").json()[1].get("last_error")),
            what="the RTSP camera's failure reported",
        )
        answers.append(client.get("/v1/cameras"))
        server.stop()  # the store goes away: errors, retries, 503s
        answers.append(client.post("/v1/events", json={"camera_id": "lane-a"}))
        answers.append(client.get("/readyz"))
        time.sleep(2)
    finally:
        worker.stop()
        server.start(port=server.port)
    assert answers[-2].status_code == 503
    assert "rtsp://admin:***@127.0.0.1" in answers[2].text
    texts = [answer.text for answer in answers]
    texts += [caplog.text, worker.log(), capture.log(), rtsp.log()]
    for text in texts:
        assert password not in text
        assert API_KEY not in text
        assert rtsp_password not in text
