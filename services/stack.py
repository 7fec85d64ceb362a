"""`sco-recorder up`: the whole stack on one machine, each service in its own process but
beat and the API, which run as threads of the supervisor (an interpreter fewer each,
docs/benchmarks.md); with SCO_API_WORKERS > 1 the API has its own processes."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from services.capture.spec import parse_source
from services.kernel.redact import mask_credentials
from services.kernel.settings import Settings, pasteable_url, secured
from services.runtime.beat import BeatThread
from services.runtime.launcher import ServiceProcess
from services.runtime.redisserver import RedisServer

if TYPE_CHECKING:
    from services.api.main import ApiThread

log = logging.getLogger(__name__)

SERVICES = ("worker",)  # beside one capture per camera, and beat and the API in this process
URLS_FILE = Path(".redis") / "urls.json"  # under the recordings root: tools find the stack's Redis
STOP_TIMEOUT = 15.0
READY_TIMEOUT = 60.0


class Stack:
    """Embedded Redis (unless a URL was given) plus a capture per camera, the API and the
    workers, each in its own process, and beat on a thread of this one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.servers: list[RedisServer] = []
        self.processes: dict[str, ServiceProcess] = {}
        self.beat: BeatThread | None = None
        self.api: ApiThread | None = None
        self.generated_key: str | None = None

    def start(self) -> None:
        """Start everything; fails fast, with the reason, if a part cannot start."""
        check_sources(self.settings)  # a missing file fails here, before anything runs
        self.settings.output_dir.mkdir(parents=True, exist_ok=True)
        # Beyond loopback the API gets a key; made here, every child reads the same one.
        self.settings, self.generated_key = secured(self.settings)
        if self.settings.redis_url is None:
            self._start_embedded_redis()
        captures = start_captures(self.settings, first_port=1)  # the worker has the first
        self.processes.update({f"capture {camera}": p for camera, p in captures.items()})
        services = list(SERVICES)
        if self.settings.api_workers > 1:
            services.append("api")
        else:
            from services.api.main import ApiThread  # noqa: PLC0415  # `captures` needs none of it

            self.api = ApiThread(self.settings).start()
        if self.settings.mqtt_url:
            services.append("mqtt")
        if self.settings.webhooks:
            services.append("notifier")
        for service in services:
            self.processes[service] = ServiceProcess(service, self.settings).start()
        self.beat = BeatThread(self.settings).start()

    def _start_embedded_redis(self) -> None:
        root = self.settings.output_dir.resolve()
        frames = RedisServer(root / ".redis" / "frames", name="frames-redis")
        broker = RedisServer(root / ".redis" / "broker", persistent=True, name="broker-redis")
        for server in (frames, broker):
            # Listed before it starts: if the second cannot start, stop() still ends the first.
            self.servers.append(server)
            server.start()
        urls = {"redis_url": frames.url, "broker_url": broker.url}
        self.settings = self.settings.model_copy(update=urls)
        (root / URLS_FILE).write_text(json.dumps(urls))

    def wait_ready(self, stop: threading.Event) -> bool:
        """Wait until the API answers; False if a service died first, or we were stopped."""
        url = f"http://{self.settings.host}:{self.settings.port}/healthz"
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and not stop.is_set():
            if self.failed() is not None:
                return False
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:  # noqa: PLR2004
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        return False

    def failed(self) -> str | None:
        """The name of a service that exited, if any."""
        for name, process in self.processes.items():
            if not process.running:
                return name
        if self.beat is not None and not self.beat.running:
            return "beat"
        if self.api is not None and not self.api.running:
            return "api"
        return None

    def run_until_stopped(self, stop: threading.Event) -> int:
        """Block until `stop` is set (Ctrl-C/SIGTERM: 0) or until a service dies (1)."""
        while not stop.wait(0.5):
            dead = self.failed()
            if dead is not None:
                if dead in self.processes:
                    log.error("%s exited with status %s", dead, self.processes[dead].returncode)
                else:
                    log.error("%s stopped; see above", dead)
                return 1
        return 0

    def stop(self) -> None:
        """Stop beat, stop the API and SIGTERM every service, give them time to finish
        their work, then stop Redis."""
        if self.beat is not None:
            self.beat.stop()
        for process in self.processes.values():
            process.send(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        if self.api is not None:
            self.api.stop(timeout=STOP_TIMEOUT)
        for name, process in self.processes.items():
            if process.wait(timeout=max(0.1, deadline - time.monotonic())) == -signal.SIGKILL:
                log.warning("%s did not stop in time; killed it", name)
        for server in self.servers:
            server.stop()
        if self.servers:
            (self.settings.output_dir.resolve() / URLS_FILE).unlink(missing_ok=True)


def check_sources(settings: Settings) -> None:
    """Every captured camera's source, checked without opening it (SourceError if wrong)."""
    for camera in settings.captured_cameras:
        parse_source(settings.for_camera(camera).source)


def start_captures(settings: Settings, first_port: int) -> dict[str, ServiceProcess]:
    """A capture process per camera, with its own settings; with metrics on, the n-th
    serves them on SCO_METRICS_PORT + first_port + n, as the captures share a host."""
    processes = {}
    for number, camera in enumerate(settings.captured_cameras, first_port):
        own = settings.for_camera(camera)
        if settings.metrics_port:
            own = own.model_copy(update={"metrics_port": settings.metrics_port + number})
        processes[camera] = ServiceProcess("capture", own).start()
    return processes


class Captures:
    """One capture process per camera of the store (`sco-recorder captures`): what compose's
    capture container runs, so a store file needs no service per camera."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.processes: dict[str, ServiceProcess] = {}

    def run(self, stop: threading.Event) -> int:
        """Start every camera's capture; stop them all when stopped (0) or when one exits
        (1: its container restarts, and every capture with it)."""
        check_sources(self.settings)
        self.processes = start_captures(self.settings, first_port=0)
        try:
            while not stop.wait(0.5):
                for camera, process in self.processes.items():
                    if not process.running:
                        log.error("capture of %s exited (%s)", camera, process.returncode)
                        return 1
            return 0
        finally:
            for process in self.processes.values():
                process.send(signal.SIGTERM)
            for process in self.processes.values():
                process.wait(timeout=STOP_TIMEOUT)


def running_stack_urls(output_dir: Path) -> dict[str, str] | None:
    """The Redis URLs of an `up` with embedded servers on this recordings root, if running."""
    try:
        urls = json.loads((output_dir.resolve() / URLS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return {"redis_url": str(urls["redis_url"]), "broker_url": str(urls["broker_url"])}


def _whom(settings: Settings) -> str:
    """What an example event names: a lane if there are lanes, a camera if there are several."""
    if settings.lanes:
        return f'"lane_id": "{next(iter(settings.lanes))}", '
    if len(settings.camera_ids) > 1:
        return f'"camera_id": "{settings.camera_ids[0]}", '
    return ""


def banner(settings: Settings, generated_key: str | None = None) -> str:
    """What a first-time user needs: where recordings land, how to send an event, and the
    key made for this run (printed here once) when the API listens beyond loopback."""
    base = pasteable_url(settings)
    output = Path(settings.output_dir).resolve()
    auth = f" -H 'Authorization: Bearer {generated_key}'" if generated_key else ""
    lines = [""]
    for camera in settings.captured_cameras:
        source = mask_credentials(settings.for_camera(camera).source)
        lines.append(f"sco-recorder is recording camera {camera} from {source}")
    for lane, cameras in settings.lanes.items():
        lines.append(f"  lane {lane}: {', '.join(cameras)}")
    lines += [
        f"  recordings: {output}/<camera>/<date>/<recording_id>/",
        f"  recordings page: {base}/    API docs: {base}/docs",
    ]
    if generated_key:
        lines += [
            f"  the API listens on {settings.host} with no key set, so this run made one",
            f"  (set SCO_API_KEY to choose it): {generated_key}",
        ]
    return "\n".join(
        [
            *lines,
            "  send an event:",
            f"    curl -s -X POST {base}/v1/events{auth} -H 'Content-Type: application/json' \\",
            f'      -d \'{{{_whom(settings)}"transaction_id": "T-1001", "metadata": '
            '{"sku": "4006381333931"}}\'',
            f"  then: curl -s{auth} '{base}/v1/recordings?limit=1'",
            "  Ctrl-C stops everything.",
            "",
        ]
    )
