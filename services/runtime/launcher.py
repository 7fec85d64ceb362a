"""Starting service processes: `sco-recorder up`, the tests and the benchmarks all use this.

A service runs as `python -m services.cli NAME` with the settings as SCO_* variables, so a
child reads exactly the configuration its parent resolved.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from services.kernel.settings import Settings, settings_env

STOP_TIMEOUT = 20.0


def service_env(settings: Settings) -> dict[str, str]:
    """This process's environment plus the settings as SCO_* variables."""
    return {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}


class ServiceProcess:
    """One service process: started, stopped gracefully (SIGKILL after a timeout), or
    killed whole with everything it started."""

    def __init__(
        self, name: str, settings: Settings, *, log: Path | None = None, own_group: bool = False
    ) -> None:
        self.name = name
        self.settings = settings
        self.log_path = log
        self.own_group = own_group
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        """Start it, its output appended to its log (else this process's output); in a process
        group of its own if asked, so that `kill_group` reaches everything it starts."""
        self._log = self.log_path.open("ab") if self.log_path else None
        self.process = subprocess.Popen(  # noqa: S603  # our own CLI, fixed argv
            [sys.executable, "-m", "services.cli", self.name],
            env=service_env(self.settings),
            stdout=self._log,
            stderr=subprocess.STDOUT if self._log else None,
            start_new_session=self.own_group,
        )
        return self

    @property
    def pid(self) -> int:
        """Its process ID."""
        assert self.process is not None, "never started"
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Its exit status, once it has exited."""
        return None if self.process is None else self.process.poll()

    def send(self, signum: int) -> None:
        """Send a signal, if it is still running."""
        if self.process is not None and self.running:
            self.process.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for it to exit; SIGKILL it after `timeout` seconds."""
        assert self.process is not None, "never started"
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._close_log()
        return int(self.process.returncode)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal it (SIGTERM: finish what it is doing) and wait for it to exit."""
        if self.process is None:
            return 0
        self.send(signum)
        return self.wait(timeout)

    def kill_group(self) -> None:
        """SIGKILL it and every process it started, as a lost host or container would."""
        if self.process is not None and self.running:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
