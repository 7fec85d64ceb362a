"""Retries as a table: each kind counts against its own budget, carried in the message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import redis
from celery import Task

from services.stores.storage import StorageFullError
from services.worker.tasks import MAX_RETRIES, STORAGE_FULL_RETRIES, retry


class Retried(Exception):  # noqa: N818  # reads as what happened: the task was retried
    """What Celery's Task.retry raises once the retry is queued."""


@dataclass
class RecordingTask:
    """A task whose retry only records what it was asked to queue."""

    queued: list[dict[str, Any]] = field(default_factory=list)

    @property
    def request(self) -> Any:
        """The request of the job being run."""
        return type("Request", (), {"id": "a" * 32})()

    def retry(self, **options: Any) -> Retried:
        """Remember the retry's kwargs and countdown."""
        self.queued.append(options)
        return Retried()


@pytest.mark.parametrize(
    ("kind", "error", "other"),
    [("transient_retries", redis.ConnectionError("down"), "storage_retries"),
     ("storage_retries", StorageFullError("full"), "transient_retries")],
)  # fmt: skip
def test_a_retry_counts_against_its_own_kind_only(kind: str, error: Exception, other: str) -> None:
    """A full disk uses the storage budget, an outage the transient one; neither the other's."""
    task = RecordingTask()
    with pytest.raises(Retried):
        retry(cast("Task[Any, Any]", task), {}, {kind: 2, other: 3}, kind, error)
    assert task.queued[0]["kwargs"] == {kind: 3, other: 3}


@pytest.mark.parametrize(
    ("kind", "limit"),
    [("transient_retries", MAX_RETRIES), ("storage_retries", STORAGE_FULL_RETRIES)],
)
def test_past_its_budget_the_error_is_raised_for_on_failure(kind: str, limit: int) -> None:
    """Once a kind's budget is spent, the error goes up and the recording ends failed."""
    task, error = RecordingTask(), RuntimeError("still failing")
    counts = {"transient_retries": 0, "storage_retries": 0, kind: limit}
    with pytest.raises(RuntimeError, match="still failing"):
        retry(cast("Task[Any, Any]", task), {}, counts, kind, error)
    assert task.queued == []
