"""The Celery app factory: one configuration for the API (which sends) and the workers."""

from __future__ import annotations

from celery import Celery

from services.common import keys
from services.common.settings import Settings


def make_celery(settings: Settings) -> Celery:
    """A Celery app on the state store, configured for jobs that must not be lost."""
    app = Celery("sco-recorder", broker=settings.state_store_url, set_as_current=False)
    soft_limit = max(5, settings.task_time_limit - 10)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=soft_limit,
        task_default_queue=keys.RECORD_QUEUE,
        task_routes={keys.RECORD_TASK: {"queue": keys.RECORD_QUEUE}},
        # A job not acknowledged within this time is handed to another worker: it must be
        # longer than any job may run, or a slow job would run twice.
        broker_transport_options={"visibility_timeout": settings.task_time_limit * 2 + 60},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,
        # A "task-sent" event is a second broker publish on every accepted event: a fifth
        # of the API's cost per event (profiled). Flower still sees received/started/done.
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
