"""Real things for the tests: Redis servers, a Celery worker, the API over HTTP, a capture."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.kernel.settings import Settings
from services.runtime.redisserver import RedisServer
from tests.support.observer import StreamObserver
from tests.support.processes import ApiServer, Service, start_worker
from tests.support.servers import Servers, base_settings
from tests.support.storeredis import StoreRedis, fake_store_redis
from tests.support.videos import write_video


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Two redis-server processes on free ports, never the machine's 6379."""
    root = tmp_path_factory.mktemp("redis")
    frames = RedisServer(root / "frames", name="frames").start()
    broker = RedisServer(root / "broker", persistent=True, name="broker").start()
    yield Servers(frames, broker)
    frames.stop()
    broker.stop()


@pytest.fixture(scope="session")
def recordings_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's worker writes recordings."""
    return tmp_path_factory.mktemp("recordings")


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
        service.stop(timeout=10)  # closes the log of one already dead, too
    Service.started.clear()


@pytest.fixture
def settings(servers: Servers, recordings_root: Path, video: Path) -> Settings:
    """Settings for one test: the indexed test video, written where the session's worker writes."""
    return base_settings(servers, recordings_root, source=str(video))


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


@pytest.fixture
def store_redis() -> Iterator[StoreRedis]:
    """The Redis of a store or Lua test: fakeredis; tests/stores/test_real_redis.py runs the
    same tests against a real server."""
    store = fake_store_redis()
    yield store
    store.close()
