"""The Celery task: validate the payload, call the recorder, declare retries."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery, Task
from pydantic import ValidationError

from services.common import keys
from services.common.contracts import RecordingJob, Status
from services.common.recordings import RecordingStore
from services.worker.recorder import Recorder
from services.worker.storage import StorageFullError

log = logging.getLogger(__name__)

# Transient: the store went away for a moment. Anything else is a bug or bad data, and
# retrying would only delay the final state.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
MAX_RETRIES = 8
STORAGE_FULL_RETRIES = 5  # 1 + 2 + 4 + 8 + 16 s: time to free space before the pin expires


def register_tasks(app: Celery, recorder: Recorder, store: RecordingStore) -> None:
    """Bind the record task to an app and the recorder that does the work."""

    class RecordTask(Task):  # type: ignore[type-arg]  # Celery's Task generic is untyped here
        """Marks the recording failed, with the reason, once no retry is left."""

        def on_failure(
            self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
        ) -> None:
            store.update(task_id, Status.FAILED, reason=f"{type(exc).__name__}: {exc}")

    @app.task(
        name=keys.RECORD_TASK,
        base=RecordTask,
        bind=True,
        autoretry_for=TRANSIENT,
        retry_backoff=True,
        retry_backoff_max=30,
        retry_jitter=True,
        max_retries=MAX_RETRIES,
    )
    def record(self: Task, payload: dict[str, Any]) -> str:  # type: ignore[type-arg]
        """Write one recording from a job payload."""
        try:
            job = RecordingJob.model_validate(payload)
        except ValidationError as error:
            log.error("rejected job %s: %s", self.request.id, error)
            store.update(str(self.request.id), Status.FAILED, reason=f"invalid job: {error}")
            return Status.FAILED.value
        try:
            return recorder.record(job).status.value
        except StorageFullError as error:
            log.warning("recording %s: %s; retrying", job.recording_id, error)
            store.update(job.recording_id, Status.RUNNING, reason=f"{error}; retrying")
            countdown = 2**self.request.retries
            raise self.retry(
                exc=error, countdown=countdown, max_retries=STORAGE_FULL_RETRIES
            ) from error
