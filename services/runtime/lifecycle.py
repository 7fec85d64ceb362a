"""One owner for a process's life: its stop signal, and what it opened, closed in reverse.

Every service's `main` runs inside a `Lifecycle`: SIGTERM and SIGINT set `stop` (the loop that
does the work watches it), resources are registered as they are opened, and on the way out
they are closed in reverse order; a cleanup that fails is logged, never raised, so the others
still run (as svcs's registry closes its services).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from types import TracebackType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Lifecycle:
    """Signals to a stop event; resources opened in order and closed in reverse."""

    def __init__(self, name: str, *, signals: bool = True) -> None:
        self.name = name
        self.signals = signals  # False where a server (uvicorn, Celery) handles them itself
        self.stop = threading.Event()
        self._stack = ExitStack()

    def __enter__(self) -> Lifecycle:
        if self.signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        log.info("%s: %s received; stopping", self.name, signal.Signals(signum).name)
        self.stop.set()

    def enter(self, manager: AbstractContextManager[T]) -> T:
        """Enter a context manager now; exit it when the process stops."""
        return self._stack.enter_context(manager)

    def on_close(self, cleanup: Callable[..., Any], *args: Any) -> None:
        """Call `cleanup(*args)` when the process stops; a failure is logged, not raised."""

        def guarded() -> None:
            try:
                cleanup(*args)
            except Exception:
                log.exception("%s: cleanup %s failed", self.name, getattr(cleanup, "__name__", ""))

        self._stack.callback(guarded)


@contextmanager
def shared_metrics(prefix: str) -> Iterator[str]:
    """A folder where several processes' Prometheus samples meet (prometheus_client's
    multiprocess mode), removed afterwards. Must be entered before prometheus_client is
    imported; a folder the user set already is kept as it is."""
    given = os.environ.get(METRICS_DIR)
    if given:
        yield given
        return
    folder = tempfile.mkdtemp(prefix=f"sco-{prefix}-metrics-")
    os.environ[METRICS_DIR] = folder
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
