"""Prometheus metrics of the API, the capture and the (multi-process) worker."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from services.kernel.contracts import utcnow
from services.kernel.settings import Settings
from services.runtime.redisserver import free_port
from services.stores.retention import RetentionStore
from services.stores.storage import Storage
from services.worker.prune import Pruner
from tests.support.processes import Service, start_worker
from tests.support.servers import Servers, base_settings
from tests.support.waiting import wait_final

pytestmark = pytest.mark.e2e

ApiFactory = Callable[[Settings], httpx.Client]


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text format."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(rf"^{pattern}$", text, re.MULTILINE)
    assert found, f"{name}{{{labels}}} not in metrics"
    return float(found.group(1))


def test_capture_worker_and_api_expose_their_metrics(
    servers: Servers,
    tmp_path: Path,
    video: Path,
    api_factory: ApiFactory,
    capture_factory: Callable[[Settings], Service],
) -> None:
    """After one recording: capture fps and appends, worker outcomes and latency, API gauges."""
    settings = base_settings(
        servers, tmp_path / "out", source=str(video), workers=2, metrics_port=free_port(),
        broker_url=servers.broker.url.rsplit("/", 1)[0] + "/4",
    )  # fmt: skip
    capture_port = free_port()
    capture_factory(settings.model_copy(update={"metrics_port": capture_port}))
    camera = f'camera_id="{settings.camera_id}"'
    client = api_factory(settings)
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        recording_id = client.post("/v1/events", json={}).json()["recording_id"]
        assert wait_final(client, recording_id)["status"] in {"complete", "partial"}
        worker_metrics = httpx.get(f"http://127.0.0.1:{settings.metrics_port}/metrics").text
        held = client.post("/v1/events", json={"hold": True}).json()["recording_id"]
        assert wait_final(client, held)["status"] in {"complete", "partial"}
    finally:
        worker.stop()
    assert (
        sum(
            sample(worker_metrics, "sco_recordings_total", f'status="{status}"')
            for status in ("complete", "partial")
            if f'status="{status}"' in worker_metrics
        )
        == 1
    )
    assert sample(worker_metrics, "sco_event_to_final_seconds_count") == 1
    capture_metrics = httpx.get(f"http://127.0.0.1:{capture_port}/metrics").text
    assert sample(capture_metrics, "sco_capture_frames_total", camera) > 0
    assert sample(capture_metrics, "sco_capture_append_seconds_count", camera) > 0
    api_metrics = client.get("/metrics").text
    assert sample(api_metrics, "sco_events_accepted_total", camera) == 2
    assert sample(api_metrics, "sco_stream_length", camera) > 0
    assert sample(api_metrics, "sco_live_pins", camera) == 0
    assert sample(api_metrics, "sco_queue_depth") == 0
    assert sample(api_metrics, "sco_redis_used_memory_bytes", 'store="frames"') > 0
    assert sample(api_metrics, "sco_redis_memory_fill_ratio", 'store="state"') == 0  # no cap
    # Retention, after a pass 31 days on: the recording not held went by the age rule.
    state = redis.Redis.from_url(settings.state_store_url)
    Pruner(
        settings, RetentionStore(state), Storage(settings.output_dir),
        clock=lambda: utcnow() + timedelta(days=31),
    ).run()  # fmt: skip
    state.close()
    api_metrics = client.get("/metrics").text
    assert sample(api_metrics, "sco_retention_deletions_total", f'{camera},rule="age"') == 1
    assert sample(api_metrics, "sco_recordings_count", camera) == 1
    assert sample(api_metrics, "sco_recordings_held", camera) == 1
    assert sample(api_metrics, "sco_recordings_bytes", camera) > 0
    assert sample(api_metrics, "sco_recordings_oldest_age_seconds", camera) >= 0
    assert sample(api_metrics, "sco_recordings_free_bytes") > 0
    assert sample(api_metrics, "sco_recordings_disk_full") == 0


def test_several_api_processes_serve_one_port_and_count_together(
    servers: Servers, tmp_path: Path
) -> None:
    """SCO_API_WORKERS=2: two processes answer, and any of them reports every event accepted."""
    settings = base_settings(
        servers, tmp_path / "out", port=free_port(), api_workers=2,
        broker_url=servers.broker.url.rsplit("/", 1)[0] + "/5",
    )  # fmt: skip
    api = Service("api", settings, tmp_path / "api.log")
    url = f"http://127.0.0.1:{settings.port}"
    # A fresh connection per request, so the kernel spreads them over both processes.
    fresh = {"Connection": "close"}
    try:
        api.wait_for_log("Application startup complete")
        children = psutil.Process(api.pid).children()
        assert sum("spawn_main" in " ".join(child.cmdline()) for child in children) == 2
        for _ in range(20):
            httpx.get(f"{url}/healthz", headers=fresh)  # both processes up, not just one
        for _ in range(40):
            assert httpx.post(f"{url}/v1/events", json={}, headers=fresh).status_code == 202
        counts = {
            sample(httpx.get(f"{url}/metrics", headers=fresh).text, "sco_events_accepted_total",
                   f'camera_id="{settings.camera_id}"')
            for _ in range(10)
        }  # fmt: skip
    finally:
        assert api.stop() == 0
        redis.Redis.from_url(str(settings.broker_url)).flushdb()
    assert counts == {40}
