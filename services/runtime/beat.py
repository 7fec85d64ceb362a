"""Celery beat, the one sender of the periodic tasks (the schedule: `taskqueue.beat_schedule`).

It runs in a process of its own (`sco-recorder beat`, compose's beat service) or as a thread
of `sco-recorder up`, whose supervisor has little else to do: one interpreter fewer on a
store's box (35 to 40 MB PSS, docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import threading

from celery import Celery
from celery.beat import Scheduler, Service
from kombu.exceptions import OperationalError

from services.kernel import keys
from services.kernel.settings import Settings
from services.stores.taskqueue import make_celery

log = logging.getLogger(__name__)

TICK_SECONDS = 1  # the longest the threaded schedule sleeps: how soon it sees a stop
STOP_TIMEOUT = 5.0


def beat_app(settings: Settings) -> Celery:
    """The app beat sends from; no connection is made yet."""
    app = make_celery(settings)
    # A look for due deliveries every second would be most of the log; prunes stay in it.
    logging.getLogger("celery.beat").addFilter(
        lambda record: keys.WEBHOOK_FLUSH_TASK not in record.getMessage()
    )
    return app


def send_first_pass(app: Celery, settings: Settings) -> None:
    """A prune pass now rather than one interval from now: a disk filled while beat was down
    is pruned at once, and the health probe (`sco-recorder check beat`) has something to
    see. Raises if the broker cannot be reached, which stops beat where it starts."""
    app.send_task(keys.PRUNE_TASK, expires=settings.prune_interval)


def run_beat(settings: Settings) -> None:
    """Send the periodic tasks from this thread until SIGTERM or SIGINT."""
    app = beat_app(settings)
    send_first_pass(app, settings)
    app.Beat(loglevel=settings.log_level).run()


class BeatThread:
    """Beat on a daemon thread of this process, for `up`'s supervisor."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: Service | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> BeatThread:
        """Send the first prune pass and start the schedule."""
        app = beat_app(self.settings)
        # The app's in-memory scheduler, named: Service would default to the persistent one,
        # which writes its schedule into a file in the working directory.
        service = Service(app, max_interval=TICK_SECONDS, scheduler_cls=Scheduler)
        self._service = service
        self._thread = threading.Thread(
            target=self._run, args=(app, service), name="beat", daemon=True
        )
        self._thread.start()
        return self

    def _run(self, app: Celery, service: Service) -> None:
        # On the thread: an unreachable broker ends it, as it would end beat's own process,
        # and `up` reports beat as a service that did not start.
        try:
            send_first_pass(app, self.settings)
        except OperationalError as error:
            log.error("beat cannot reach the broker: %s", error)
            return
        service.start()

    @property
    def running(self) -> bool:
        """Whether the schedule is still being sent."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop sending; waits for the tick under way."""
        if self._service is not None and self._thread is not None:
            self._service.stop()
            self._thread.join(timeout=STOP_TIMEOUT)
