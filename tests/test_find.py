"""Finding and fetching recordings end to end: search over HTTP, frames, thumbnail, the zip,
and `sco-recorder get` / `verify`, against real capture, worker and API processes."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from services.kernel.settings import Settings
from tests.support.frames import load_manifest
from tests.support.processes import Service, start_worker
from tests.support.servers import Servers, base_settings
from tests.support.waiting import wait_buffered, wait_final

pytestmark = pytest.mark.e2e

ApiFactory = Callable[[Settings], httpx.Client]
CLI = [sys.executable, "-m", "services.cli"]
KEY = "investigator-key-0123456789"


@pytest.fixture
def recorded(
    servers: Servers,
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: Callable[[Settings], Service],
) -> tuple[httpx.Client, list[dict[str, Any]]]:
    """A lane behind an API key, and three final recordings (T-1, T-2, T-3), newest last."""
    settings = base_settings(
        servers, tmp_path / "recordings", source=str(video), api_key=KEY,
        broker_url=servers.broker.url.rsplit("/", 1)[0] + "/6",
    )  # fmt: skip
    redis.Redis.from_url(settings.state_store_url).flushdb()  # this fixture's own database
    capture_factory(settings)
    start_worker(settings, tmp_path / "worker.log")
    client = api_factory(settings)
    client.headers["Authorization"] = f"Bearer {KEY}"
    wait_buffered(client, settings.frames)
    ids = []
    for number in (1, 2, 3):
        event = {"transaction_id": f"T-{number}", "metadata": {"lane": 1, "sku": "4006381333931"}}
        ids.append(client.post("/v1/events", json=event).json()["recording_id"])
    return client, [wait_final(client, recording_id) for recording_id in ids]


def test_search_frames_thumbnail_and_zip_over_http(
    recorded: tuple[httpx.Client, list[dict[str, Any]]],
) -> None:
    client, recordings = recorded
    first = recordings[0]
    found = client.get("/v1/recordings", params={"transaction_id": "T-1"})
    assert [r["recording_id"] for r in found.json()] == [first["recording_id"]]
    page = client.get("/v1/recordings", params={"limit": 2})
    assert [r["recording_id"] for r in page.json()] == [
        recordings[2]["recording_id"], recordings[1]["recording_id"]
    ]  # fmt: skip
    rest = client.get(
        "/v1/recordings", params={"limit": 2, "cursor": page.headers["X-Next-Cursor"]}
    )
    assert [r["recording_id"] for r in rest.json()] == [first["recording_id"]]
    assert 'rel="next"' in page.headers["Link"]
    assert client.get("/v1/recordings", params={"cursor": "nonsense"}).status_code == 422

    manifest: dict[str, Any] = load_manifest(first)
    folder = Path(manifest["path"])
    assert {oct(path.stat().st_mode & 0o777) for path in folder.iterdir()} == {"0o640"}
    for level in (folder, folder.parent, folder.parent.parent):  # recording, day, camera
        assert oct(level.stat().st_mode & 0o777) == "0o750", level
    base = f"/v1/recordings/{first['recording_id']}"
    frame = client.get(f"{base}/frames/1")
    assert frame.status_code == 200
    assert frame.headers["content-type"] == "image/png"
    assert hashlib.sha256(frame.content).hexdigest() == manifest["frames"][0]["sha256"]
    assert "immutable" in frame.headers["cache-control"]
    again = client.get(f"{base}/frames/1", headers={"If-None-Match": frame.headers["etag"]})
    assert again.status_code == 304
    assert client.get(f"{base}/frames/{len(manifest['frames']) + 1}").status_code == 404
    assert client.get(f"{base}/frames/0").status_code == 422
    thumbnail = client.get(f"{base}/thumbnail")
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert thumbnail.content[:2] == b"\xff\xd8"
    assert httpx.get(f"{client.base_url}{base}/frames/1").status_code == 401  # no key

    download = client.get(f"{base}/download")
    assert download.status_code == 200
    assert int(download.headers["content-length"]) == len(download.content)
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        names = archive.namelist()
        files = {name.split("/", 1)[1]: archive.read(name) for name in names}
    assert all(name.startswith(f"{first['recording_id']}/") for name in names)
    assert {"metadata.json", "thumbnail.jpg", "SHA256SUMS"} <= set(files)
    sums = {
        name: digest
        for digest, name in (line.split("  ") for line in files["SHA256SUMS"].decode().splitlines())
    }
    assert set(sums) == set(files) - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256(files[name]).hexdigest() == digest, name


def test_get_unpacks_a_recording_and_verify_catches_a_changed_frame(
    recorded: tuple[httpx.Client, list[dict[str, Any]]], tmp_path: Path
) -> None:
    client, recordings = recorded
    recording_id = recordings[1]["recording_id"]
    env = {"SCO_API_KEY": KEY, "PATH": "/usr/bin:/bin"}
    got = subprocess.run(
        [*CLI, "get", recording_id, "--to", str(tmp_path / "case"), "--url", str(client.base_url)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    folder = tmp_path / "case" / recording_id
    assert f"OK {recordings[1]['frames_saved']} frames" in got.stdout
    assert subprocess.run(
        ["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=folder, check=False
    ).returncode == 0  # fmt: skip

    assert "signed by the box" in got.stdout
    key = client.get("/v1/signing-key").json()
    assert (tmp_path / "case" / "signing-key.pub").read_text() == key["pem"]

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "verify", str(folder)], capture_output=True, text=True, timeout=60, check=False
        )

    frame = folder / "frame_0003.png"
    original = frame.read_bytes()
    frame.write_bytes(original[:-1] + b"\x00")
    checked = verify()
    assert checked.returncode == 1
    assert "MISMATCH frame_0003.png" in checked.stderr
    frame.write_bytes(original)
    assert verify().returncode == 0
    # Changing the hashes along with the frame does not help: the signature breaks.
    manifest = json.loads((folder / "metadata.json").read_text())
    manifest["frames"][2]["sha256"] = hashlib.sha256(original[:-1] + b"\x00").hexdigest()
    (folder / "metadata.json").write_text(json.dumps(manifest))
    frame.write_bytes(original[:-1] + b"\x00")
    checked = verify()
    assert checked.returncode == 1
    assert "it was changed after it was signed" in checked.stderr
    unknown = subprocess.run(
        [*CLI, "get", "0" * 32, "--to", str(tmp_path), "--url", str(client.base_url)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert unknown.returncode == 1
    assert "404" in unknown.stderr
