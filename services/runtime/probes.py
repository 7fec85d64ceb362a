"""Health probes for container healthchecks: is this service doing its job right now?"""

from __future__ import annotations

import socket

import httpx
import redis

from services.kernel import keys
from services.kernel.contracts import utcnow
from services.kernel.settings import Settings
from services.stores.cameras import CameraRegistry
from services.stores.retention import RetentionStore
from services.stores.taskqueue import make_celery

TIMEOUT = 3.0


class Unhealthy(RuntimeError):  # noqa: N818  # reads as a state: "raise Unhealthy(reason)"
    """The service is not healthy; the message says why."""


def probe_api(settings: Settings) -> str:
    """The API answers /healthz."""
    url = f"http://127.0.0.1:{settings.port}/healthz"
    try:
        answer = httpx.get(url, timeout=TIMEOUT)
    except httpx.TransportError as error:
        raise Unhealthy(f"api: {error}") from None
    if answer.status_code != 200:  # noqa: PLR2004
        raise Unhealthy(f"api: /healthz answered {answer.status_code}")
    return "api: ok"


def probe_capture(settings: Settings) -> str:
    """Every captured camera (the store file's, else SCO_CAMERA_ID) published a running
    heartbeat within stale_after seconds."""
    client = redis.Redis.from_url(settings.frame_store_url, socket_timeout=TIMEOUT)
    try:
        statuses = {camera: CameraRegistry(client).read(camera)
                    for camera in settings.captured_cameras}  # fmt: skip
    finally:
        client.close()
    shown = []
    for camera, status in statuses.items():
        if status is None:
            raise Unhealthy(f"capture: no heartbeat for camera {camera}")
        age = (utcnow() - status.updated_at).total_seconds()
        if status.state != "running" or age > settings.stale_after:
            raise Unhealthy(
                f"capture: camera {camera} {status.state}, heartbeat {age:.1f} s old, "
                f"{status.last_error}"
            )
        shown.append(f"{camera} at {status.fps} fps")
    return f"capture: running: {', '.join(shown)}"


def _ping(settings: Settings, service: str, node: str) -> str:
    """This host's Celery worker `node` answers a ping over the broker."""
    name = f"{node}@{socket.gethostname()}"
    replies = make_celery(settings).control.ping(destination=[name], timeout=TIMEOUT)
    if not replies:
        raise Unhealthy(f"{service}: {name} did not answer a ping")
    return f"{service}: {name} ok"


def probe_worker(settings: Settings) -> str:
    """This host's recording worker answers a ping over the broker."""
    return _ping(settings, "worker", "celery")


def probe_notifier(settings: Settings) -> str:
    """This host's webhooks worker (`sco-recorder notifier`) answers a ping."""
    return _ping(settings, "notifier", "notifier")


def probe_mqtt(settings: Settings) -> str:
    """The MQTT ingest is connected (it refreshes a short-lived key while it is)."""
    client = redis.Redis.from_url(settings.state_store_url, socket_timeout=TIMEOUT)
    try:
        alive = client.exists(keys.mqtt_alive(settings.mqtt_client_id))
    finally:
        client.close()
    if not alive:
        raise Unhealthy(f"mqtt: {settings.mqtt_client_id} is not connected to its broker")
    return "mqtt: connected"


def probe_beat(settings: Settings) -> str:
    """Prune passes run: the disk status a pass publishes lapses after 3 intervals unless
    beat keeps sending passes and a worker keeps running them."""
    client = redis.Redis.from_url(settings.state_store_url, socket_timeout=TIMEOUT)
    try:
        disk = RetentionStore(client).disk()
    finally:
        client.close()
    if disk is None:
        raise Unhealthy("beat: no prune pass ran lately (beat or every worker is down)")
    age = (utcnow() - disk.checked_at).total_seconds()
    return f"beat: last prune pass {age:.0f} s ago{', disk full' if disk.full else ''}"


PROBES = {
    "api": probe_api,
    "capture": probe_capture,
    "worker": probe_worker,
    "mqtt": probe_mqtt,
    "beat": probe_beat,
    "notifier": probe_notifier,
}
