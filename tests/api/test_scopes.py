"""Keys with scopes, and an API that never listens beyond loopback without one."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from services.kernel.settings import Settings, pasteable_url, secured
from services.runtime.redisserver import free_port
from tests.support.processes import Service
from tests.support.waiting import wait_until

ApiFactory = Callable[[Settings], httpx.Client]
INGEST_OLD, INGEST_NEW, READ = (f"{name}-{uuid.uuid4().hex}" for name in ("pos1", "pos2", "lp"))
UNKNOWN = "0" * 32
EVERYWHERE = "0.0.0.0"  # noqa: S104  # what these tests are about
READ_ROUTES = [
    ("GET", "/v1/recordings"),
    ("GET", "/v1/cameras"),
    ("GET", f"/v1/recordings/{UNKNOWN}/frames/1"),
    ("GET", f"/v1/recordings/{UNKNOWN}/thumbnail"),
    ("GET", f"/v1/recordings/{UNKNOWN}/download"),
    ("GET", f"/v1/recordings/{UNKNOWN}/metadata"),
    ("POST", f"/v1/recordings/{UNKNOWN}/verify"),
    ("PUT", f"/v1/recordings/{UNKNOWN}/hold"),
    ("DELETE", f"/v1/recordings/{UNKNOWN}/hold?reason=r&by=b"),
    ("GET", "/v1/signing-key"),
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_an_ingest_key_posts_events_and_reveals_no_images(
    settings: Settings, api_factory: ApiFactory
) -> None:
    """The cashier system's keys (two, to rotate) post events and read their status; only a
    read key reaches recordings, frames, cameras and holds."""
    client = api_factory(
        settings.model_copy(
            update={
                "ingest_keys": [SecretStr(INGEST_OLD), SecretStr(INGEST_NEW)],
                "read_keys": [SecretStr(READ)],
            }
        )
    )
    accepted = []
    for key in (INGEST_OLD, INGEST_NEW):
        answer = client.post("/v1/events", json={}, headers=bearer(key))
        assert answer.status_code == 202, answer.text
        accepted.append(answer.json()["recording_id"])
    assert client.post("/v1/events", json={}, headers=bearer(READ)).status_code == 403
    assert client.post("/v1/events", json={}).status_code == 401
    for key in (INGEST_OLD, READ):
        status = client.get(f"/v1/recordings/{accepted[0]}", headers=bearer(key))
        assert status.status_code == 200, (key, status.text)
    body = {"reason": "case", "by": "lp"}
    for method, path in READ_ROUTES:
        refused = client.request(method, path, headers=bearer(INGEST_NEW), json=body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert "needs a read key" in refused.json()["detail"]
        allowed = client.request(method, path, headers=bearer(READ), json=body)
        assert allowed.status_code not in {401, 403}, (method, path, allowed.text)
        assert client.request(method, path, json=body).status_code == 401, (method, path)


@pytest.mark.parametrize(
    ("host", "keys", "allow", "generated"),
    [
        (EVERYWHERE, {}, False, True),
        ("127.0.0.1", {}, False, False),
        (EVERYWHERE, {"read_keys": [SecretStr("k")]}, False, False),
        (EVERYWHERE, {}, True, False),
    ],
)
def test_a_key_is_made_only_for_an_open_api_beyond_loopback(
    settings: Settings, host: str, keys: dict[str, object], allow: bool, generated: bool
) -> None:
    given = settings.model_copy(update={"host": host, "allow_no_auth": allow, **keys})
    result, key = secured(given)
    assert (key is not None) == generated
    assert result.has_keys == (generated or bool(keys))
    assert EVERYWHERE not in pasteable_url(result)


@pytest.mark.e2e
def test_the_api_on_every_interface_without_a_key_prints_one_and_requires_it(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    api = Service(
        "api", settings.model_copy(update={"host": EVERYWHERE, "port": port}), tmp_path / "a.log"
    )
    api.wait_for_log("made for this run")
    printed = re.search(r"curl -H 'Authorization: Bearer (\S+)' (\S+)/v1/cameras", api.log())
    assert printed is not None, api.log()
    key, base = printed.groups()
    assert base == f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(base), what="the API up")
    assert httpx.get(f"{base}/v1/cameras").status_code == 401
    assert httpx.get(f"{base}/v1/cameras", headers=bearer(key)).status_code == 200
    assert api.log().count(key) == 2  # the key line and the curl line, once each
    api.stop()

    open_api = Service(
        "api",
        settings.model_copy(update={"host": EVERYWHERE, "port": port, "allow_no_auth": True}),
        tmp_path / "b.log",
    )
    open_api.wait_for_log("SCO_ALLOW_NO_AUTH=true")
    wait_until(lambda: _answers(base), what="the open API up")
    assert httpx.get(f"{base}/v1/cameras").status_code == 200


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz").status_code == 200
    except httpx.TransportError:
        return False
