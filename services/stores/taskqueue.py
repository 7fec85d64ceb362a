"""The Celery app factory: one configuration for the API (which sends) and the workers."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from celery import Celery
from kombu.utils import json

from services.kernel import keys
from services.kernel.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """A prune pass every SCO_PRUNE_INTERVAL; with webhooks, a look for due deliveries every
    SCO_WEBHOOK_INTERVAL. Each is dropped if nothing took it before the next."""
    schedule: dict[str, dict[str, Any]] = {
        "prune": {
            "task": keys.PRUNE_TASK,
            "schedule": settings.prune_interval,
            "options": {"expires": settings.prune_interval},
        }
    }
    if settings.webhooks:
        schedule["webhooks"] = {
            "task": keys.WEBHOOK_FLUSH_TASK,
            "schedule": settings.webhook_interval,
            "options": {"expires": max(settings.webhook_interval, 5.0)},
        }
    return schedule


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
        task_routes={
            keys.RECORD_TASK: {"queue": keys.RECORD_QUEUE},
            keys.PRUNE_TASK: {"queue": keys.MAINTENANCE_QUEUE},
            keys.HOLD_TASK: {"queue": keys.MAINTENANCE_QUEUE},
            keys.WEBHOOK_FLUSH_TASK: {"queue": keys.WEBHOOK_QUEUE},
            keys.WEBHOOK_DELIVER_TASK: {"queue": keys.WEBHOOK_QUEUE},
        },
        # `sco-recorder beat` sends these; the schedule lives in memory (nothing on disk).
        beat_schedule=beat_schedule(settings),
        beat_scheduler="celery.beat:Scheduler",
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


def record_message(app: Celery, job: dict[str, Any], task_id: str) -> str:
    """The message `send_task` would push for a record job, built without publishing it.

    The API queues a job in the same Redis script that creates its recording, so an event
    costs one round trip to the state store instead of two, and none of kombu's publish
    machinery, which was most of the API's time per event (docs/benchmarks.md). The layout
    is the Celery protocol 2 message in kombu's Redis envelope; a test compares it with
    what `send_task` pushes.
    """
    # What Flower shows as the job's arguments: which recording, not the whole job, whose
    # safe repr cost a third of accepting an event. ignore_result is left unset, as send_task
    # leaves it: the app's task_ignore_result decides.
    summary = {name: job.get(name) for name in ("recording_id", "camera_id", "transaction_id")}
    task = app.amqp.create_task_message(
        task_id,
        keys.RECORD_TASK,
        [job],
        {},
        reply_to=app.thread_oid,
        ignore_result=None,
        argsrepr=repr([summary]),
    )
    body = base64.b64encode(json.dumps(task.body).encode()).decode()
    properties = {
        **task.properties,
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": keys.RECORD_QUEUE},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    envelope = {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": task.headers,
        "properties": properties,
    }
    return json.dumps(envelope)


def redelivered(message: dict[str, Any]) -> dict[str, Any]:
    """A message marked as kombu marks one it delivers again."""
    message.setdefault("headers", {})["redelivered"] = True
    message.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
    return message


def queued_again(raw: bytes | str, runs: int) -> str:
    """A record job's message as its event queued it, to queue again once it was lost: marked
    redelivered, and counting the `runs` its job has had as retries. The lost message's own
    count of retries is gone with it, and runs not counted as retries would read as workers
    that died on the job (SCO_MAX_DELIVERIES)."""
    envelope = redelivered(json.loads(raw))
    args, kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
    kwargs["transient_retries"] = max(runs, kwargs.get("transient_retries", 0))
    envelope["body"] = base64.b64encode(json.dumps([args, kwargs, embed]).encode()).decode()
    return str(json.dumps(envelope))
