"""Service processes started by a test, and the API served in a thread of the test."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import ClassVar

import uvicorn

from services.api.app import create_app
from services.kernel.settings import Settings
from services.runtime.launcher import ServiceProcess
from services.runtime.redisserver import free_port

READY_TIMEOUT = 30.0


class Service(ServiceProcess):
    """`python -m services.cli NAME` in a process group of its own, its output in a log file;
    every one started is stopped after its test (see conftest)."""

    started: ClassVar[list[Service]] = []

    def __init__(self, name: str, settings: Settings, log_path: Path) -> None:
        super().__init__(name, settings, log=log_path, own_group=True)
        self.start()
        Service.started.append(self)

    def wait_for_log(self, text: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the service has logged `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.running:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name} never logged {text!r}:\n{self.log()}")

    def log(self) -> str:
        """What the service printed so far."""
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the service and wait for it to exit (SIGKILL after the timeout)."""
        return super().stop(signum, timeout)


def start_worker(settings: Settings, log_path: Path) -> Service:
    """A real Celery worker process, ready to take jobs."""
    worker = Service("worker", settings, log_path)
    worker.wait_for_log(" ready.")
    return worker


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
