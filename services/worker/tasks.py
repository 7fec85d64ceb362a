"""The Celery tasks: record (validate the payload, call the recorder, declare retries), and
the maintenance ones: a prune pass, and showing a hold in a recording's metadata.json."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from celery import Celery, Task
from celery.exceptions import Reject
from pydantic import ValidationError

from services.kernel import keys
from services.kernel.backoff import compute_backoff
from services.kernel.contracts import RecordingJob, Status
from services.kernel.outages import TRANSIENT
from services.stores.recordings import RecordingStore
from services.stores.storage import StorageFullError
from services.worker.prune import Pruner
from services.worker.recorder import Recorder, SupersededError

log = logging.getLogger(__name__)

# A store outage is worth retrying; anything else is a bug or bad data, and retrying would
# only delay the final state. Each kind of retry has its own budget, counted in the retried
# message itself (a store that is down cannot count for us): a full disk must not use up the
# retries of an outage.
MAX_RETRIES = 8  # backoff 1, 2, 4, ... 30 s: about two and a half minutes of outage
STORAGE_FULL_RETRIES = 5  # 1 + 2 + 4 + 8 + 16 s: time to free space before the pin expires
RETRY_LIMITS = {"transient_retries": MAX_RETRIES, "storage_retries": STORAGE_FULL_RETRIES}


def register_tasks(app: Celery, recorder: Recorder, store: RecordingStore) -> None:
    """Bind the record task to an app and the recorder that does the work."""

    class RecordTask(Task):  # type: ignore[type-arg]  # Celery's Task generic is untyped here
        """Marks the recording failed, with the reason, once no retry is left.

        Runs in the pool process for an exception, and in the main process for the hard
        time limit. If the state store is down then, the recording stays open and the
        deadline sweep settles it (services/worker/liveness.py).
        """

        def on_failure(
            self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
        ) -> None:
            settle_failed(store, recorder, task_id, exc, args)

    @app.task(name=keys.RECORD_TASK, base=RecordTask, bind=True, max_retries=None)
    def record(
        self: Task,  # type: ignore[type-arg]
        payload: dict[str, Any],
        transient_retries: int = 0,
        storage_retries: int = 0,
    ) -> str:
        """Write one recording from a job payload."""
        try:
            job = RecordingJob.model_validate(payload)
        except ValidationError as error:
            log.error("rejected job %s: %s", self.request.id, error)
            store.update(str(self.request.id), Status.FAILED, reason=f"invalid job: {error}")
            return Status.FAILED.value
        counts = {"transient_retries": transient_retries, "storage_retries": storage_retries}
        try:
            return recorder.record(job, retries=transient_retries + storage_retries).status.value
        except SupersededError as error:
            log.warning("%s; leaving the recording to it", error)
            return "superseded"
        except TRANSIENT as error:
            retry(self, payload, counts, "transient_retries", error)
        except StorageFullError as error:
            store.update(job.recording_id, Status.RUNNING, reason=f"{error}; retrying")
            prune_soon(app)
            retry(self, payload, counts, "storage_retries", error)
        raise AssertionError("unreachable: retry raises")  # pragma: no cover


def register_maintenance(app: Celery, pruner: Pruner, store: RecordingStore) -> None:
    """Bind the prune task (Celery beat sends it every SCO_PRUNE_INTERVAL) and the hold task
    (the API sends it when a hold is placed or released)."""

    @app.task(name=keys.PRUNE_TASK)
    def prune() -> int:
        """One retention pass; how many recordings it deleted."""
        report = pruner.run()
        if report.skipped:
            log.info("prune: %s", report.skipped)
        if report.disk is not None and report.disk.full:
            log.error("prune: %s; events are refused until space is freed", report.disk.reason)
        return len(report.deletions)

    @app.task(name=keys.HOLD_TASK)
    def write_hold(recording_id: str) -> bool:
        """Show a recording's hold (or its release) in its metadata.json."""
        recording = store.get(recording_id)
        if recording is None or not recording.status.is_final:
            return False  # gone; or its job still runs, and will write the hold itself
        found = pruner.storage.find(recording)
        return found is not None and pruner.storage.write_hold(found[1], recording.hold)


def prune_soon(app: Celery) -> None:
    """Ask for a prune pass now (the disk is full), best effort: beat sends one anyway."""
    try:
        app.send_task(keys.PRUNE_TASK, expires=60)
    except Exception:  # the broker may be what is failing too
        log.debug("could not queue a prune pass", exc_info=True)


def retry(
    task: Task,  # type: ignore[type-arg]
    payload: dict[str, Any],
    counts: dict[str, int],
    kind: str,
    error: Exception,
) -> NoReturn:
    """Retry the job with one more of `kind` counted, after a backoff; re-raise past its limit."""
    if counts[kind] >= RETRY_LIMITS[kind]:
        raise error
    log.warning("recording %s: %s; retrying", task.request.id, error)
    countdown = compute_backoff(counts[kind], jitter=kind == "transient_retries")
    kwargs = {**counts, kind: counts[kind] + 1}
    try:
        raise task.retry(args=(payload,), kwargs=kwargs, exc=error, countdown=countdown)
    except Reject as unsent:
        # The retry could not be queued (the broker is the store that is down). Celery would
        # drop the message; leave it to come back instead: requeued if the broker answers,
        # else still unacknowledged, which the takeover hands out again once it is back.
        raise Reject(unsent.args[0] if unsent.args else error, requeue=True) from error


def settle_failed(
    store: RecordingStore, recorder: Recorder, recording_id: str, exc: BaseException, args: Any
) -> None:
    """Mark a recording failed with the error, and release its pin; never raise.

    If the state store is down, the recording stays open and the deadline sweep settles it
    (services/worker/liveness.py); an unreleased pin expires by itself.
    """
    reason = f"{type(exc).__name__}: {exc}"
    try:
        store.update(recording_id, Status.FAILED, reason=reason)
    except Exception:
        log.exception("recording %s failed (%s); that could not be stored", recording_id, reason)
    try:
        recorder.abandon(RecordingJob.model_validate(args[0]))
    except Exception:  # a bad payload, or the frame store is down
        log.debug("could not release the pin of %s", recording_id, exc_info=True)
