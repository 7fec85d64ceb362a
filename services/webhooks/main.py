"""`sco-recorder notifier`: a Celery worker of its own, threads on the webhooks queue only, so
a receiver that hangs holds up nothing but its own delivery."""

from __future__ import annotations

import logging

import httpx
import redis
from celery import Celery

from services.kernel import keys
from services.kernel.logconfig import configure_logging
from services.kernel.settings import Settings
from services.stores.recordings import RecordingStore
from services.stores.taskqueue import make_celery
from services.stores.webhooks import WebhookStore
from services.webhooks.delivery import Notifier

log = logging.getLogger(__name__)

NODE = "notifier@%h"
THREADS = 8  # deliveries in flight at once: each mostly waits on its receiver


def build_notifier(settings: Settings) -> Celery:
    """A Celery app with the two webhook tasks: flush (sent by beat) and deliver."""
    app = make_celery(settings)
    client = redis.Redis.from_url(settings.state_store_url, health_check_interval=10)
    http = httpx.Client(follow_redirects=False)
    notifier = Notifier(settings, WebhookStore(client), RecordingStore(client), http)

    @app.task(name=keys.WEBHOOK_FLUSH_TASK, ignore_result=True)
    def flush() -> int:
        """Move final recordings into deliveries; send a deliver task for each one due."""
        due = notifier.flush()
        for delivery in due:
            app.send_task(keys.WEBHOOK_DELIVER_TASK, args=[delivery])
        return len(due)

    @app.task(name=keys.WEBHOOK_DELIVER_TASK, ignore_result=True)
    def deliver(delivery: str) -> bool:
        """POST one delivery; a failure is counted and comes due again after its backoff."""
        outcome = notifier.deliver(delivery)
        return bool(outcome and outcome.delivered)

    return app


def main(settings: Settings) -> None:
    """Run the notifier until SIGTERM."""
    configure_logging(settings.log_level)
    if not settings.webhooks:
        log.warning("no webhooks configured (SCO_WEBHOOKS, or [[webhooks]] in the store file)")
    build_notifier(settings).worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            "--pool=threads",
            f"--concurrency={THREADS}",
            f"--queues={keys.WEBHOOK_QUEUE}",
            f"--hostname={NODE}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
