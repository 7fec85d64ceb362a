"""Real things for the tests: Redis servers, a Celery worker, the API over HTTP, a capture."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, cast

import httpx
import pytest
import redis
import uvicorn
from redis import asyncio as aioredis

from services.api.app import create_app
from services.kernel import keys
from services.kernel.contracts import Recording
from services.kernel.framecodec import Frame, decode_entry
from services.kernel.settings import Settings, settings_env
from services.runtime.redisserver import RedisServer, free_port
from services.stores.framebuffer import FramePins, Pin
from services.stores.recordings import AsyncRecordingStore
from tests.videos import write_video

READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Servers:
    """The session's two Redis servers: frames (no persistence) and broker/state (AOF)."""

    frames: RedisServer
    broker: RedisServer


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Two redis-server processes on free ports, never the machine's 6379."""
    root = tmp_path_factory.mktemp("redis")
    frames = RedisServer(root / "frames", name="frames").start()
    broker = RedisServer(root / "broker", persistent=True, name="broker").start()
    yield Servers(frames, broker)
    frames.stop()
    broker.stop()


def pin_window(
    servers: Servers,
    camera_id: str,
    recording_id: str,
    frames_before: int,
    moment_us: int,
    *,
    frames_after: int = 0,
    max_delay_ms: int = 30_000,
) -> Pin:
    """Pin a window as the API does at receipt, at a moment (and clock) of the test's choosing."""

    async def pin() -> Pin:
        frames = aioredis.Redis.from_url(servers.frames.url)
        try:
            return await FramePins(frames, camera_id).pin(
                recording_id, frames_before, frames_after=frames_after, moment_us=moment_us,
                lifetime_ms=max_delay_ms, now_us=moment_us,
            )  # fmt: skip
        finally:
            await frames.aclose()

    return asyncio.run(pin())


def receive(
    servers: Servers, recording: Recording, frames_before: int, moment_us: int, max_delay_ms: int
) -> Pin:
    """What the API does at receipt, at a moment of the test's choosing: pin, then create."""
    frames_after = recording.frames_requested - frames_before
    pin = pin_window(
        servers, recording.camera_id, recording.recording_id, frames_before, moment_us,
        frames_after=frames_after, max_delay_ms=max_delay_ms,
    )  # fmt: skip

    async def create() -> None:
        state = aioredis.Redis.from_url(servers.broker.url)
        try:
            await AsyncRecordingStore(state).create(recording, None, 60)
        finally:
            await state.aclose()

    asyncio.run(create())
    return pin


@pytest.fixture(scope="session")
def recordings_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's worker writes recordings."""
    return tmp_path_factory.mktemp("recordings")


def service_env(settings: Settings) -> dict[str, str]:
    """The environment a service process started by a test gets."""
    return {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}


class Service:
    """A service started as `python -m services.cli NAME`, its output kept in a log file."""

    started: ClassVar[list[Service]] = []

    def __init__(self, name: str, settings: Settings, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", name],
            env=service_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a test can kill it whole
        )
        Service.started.append(self)

    def wait_for_log(self, text: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the service has logged `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name} never logged {text!r}:\n{self.log()}")

    def log(self) -> str:
        """What the service printed so far."""
        return self.log_path.read_text(errors="replace")

    def kill_group(self) -> None:
        """SIGKILL the service and every process it started, as a lost host or container."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the service and wait for it to exit."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)


def start_worker(settings: Settings, log_path: Path) -> Service:
    """A real Celery worker process, ready to take jobs."""
    worker = Service("worker", settings, log_path)
    worker.wait_for_log(" ready.")
    return worker


def base_settings(servers: Servers, output: Path, **overrides: object) -> Settings:
    """Settings for one test: its own camera ID, small frames, the session's servers."""
    values: dict[str, object] = {
        "camera_id": f"cam-{uuid.uuid4().hex[:8]}",
        "redis_url": servers.frames.url,
        "broker_url": servers.broker.url,
        "output_dir": output,
        "frames": 10,
        "workers": 2,
        "log_level": "INFO",
        # Long enough for the next frame at 25 fps; short for jobs of tests with no capture.
        "settle_timeout": 0.5,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture(scope="session")
def session_worker(
    servers: Servers, recordings_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The session's worker, on broker DB 0."""
    settings = base_settings(servers, recordings_root)
    worker = start_worker(settings, tmp_path_factory.mktemp("logs") / "worker.log")
    Service.started.remove(worker)  # the session's own: not stopped after each test
    yield worker
    worker.stop()


@pytest.fixture(autouse=True)
def stop_leftover_services() -> Iterator[None]:
    """A test that fails half-way still leaves no service process running behind it."""
    Service.started.clear()
    yield
    for service in Service.started:
        service.stop(signal.SIGTERM, timeout=10)  # closes the log of one already dead, too
    Service.started.clear()


@pytest.fixture
def settings(servers: Servers, recordings_root: Path, video: Path) -> Settings:
    """Settings for one test: the indexed test video, written where the session's worker writes."""
    return base_settings(servers, recordings_root, source=str(video))


class ApiServer:
    """The real API app served by uvicorn in a thread, on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        """Serve and wait until it answers."""
        self.thread.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.server.started:
            assert time.monotonic() < deadline, "API did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut down gracefully."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def api_factory() -> Iterator[Callable[[Settings], httpx.Client]]:
    """Starts APIs for given settings; yields an HTTP client for each."""
    started: list[tuple[ApiServer, httpx.Client]] = []

    def start(settings: Settings) -> httpx.Client:
        server = ApiServer(settings).start()
        client = httpx.Client(base_url=server.url, timeout=10.0)
        started.append((server, client))
        return client

    yield start
    for server, client in started:
        client.close()
        server.stop()


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """A 20-second indexed test video at 25 fps, 320x240."""
    return write_video(tmp_path / "lane.avi", frames=500)


@pytest.fixture
def capture_factory(tmp_path: Path) -> Iterator[Callable[[Settings], Service]]:
    """Starts `sco-recorder capture` processes; stops them after the test."""
    started: list[Service] = []

    def start(settings: Settings) -> Service:
        service = Service("capture", settings, tmp_path / f"capture-{len(started)}.log")
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@dataclass
class StreamObserver:
    """Ground truth: every frame the capture put in the stream, read as it arrives."""

    client: redis.Redis
    camera_id: str
    frames: list[Frame] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> StreamObserver:
        """Follow the stream from its beginning."""
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()
        return self

    def _follow(self) -> None:
        last = "0-0"
        stream = keys.frame_stream(self.camera_id)
        while not self._stop.is_set():
            replies = cast(
                "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]",
                self.client.xread({stream: last}, block=100, count=50),
            )
            for _, entries in replies:
                for stream_id, fields in entries:
                    self.frames.append(decode_entry(stream_id, fields))
                    last = stream_id.decode()

    def stop(self) -> None:
        """Stop following."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_for(self, count: int, timeout: float = READY_TIMEOUT) -> None:
        """Wait until at least `count` frames were seen."""
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            assert time.monotonic() < deadline, f"only {len(self.frames)} frames arrived"
            time.sleep(0.02)

    def by_id(self) -> dict[str, Frame]:
        """Seen frames by stream ID."""
        return {frame.stream_id: frame for frame in list(self.frames)}


@pytest.fixture
def observer_factory(servers: Servers) -> Iterator[Callable[[str], StreamObserver]]:
    """Starts stream observers for cameras; stops them after the test."""
    client = redis.Redis.from_url(servers.frames.url)
    started: list[StreamObserver] = []

    def start(camera_id: str) -> StreamObserver:
        observer = StreamObserver(client, camera_id).start()
        started.append(observer)
        return observer

    yield start
    for observer in started:
        observer.stop()
    client.close()


def wait_final(client: httpx.Client, recording_id: str, timeout: float = 60.0) -> dict[str, object]:
    """Poll a recording until it is complete, partial or failed."""
    deadline = time.monotonic() + timeout
    while True:
        recording: dict[str, object] = client.get(f"/v1/recordings/{recording_id}").json()
        if recording["status"] in {"complete", "partial", "failed"}:
            return recording
        assert time.monotonic() < deadline, f"recording stuck: {recording}"
        time.sleep(0.05)
