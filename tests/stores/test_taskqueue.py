"""The job message the API builds itself is the one Celery's send_task would push."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from services.kernel import keys
from services.kernel.settings import Settings
from services.stores.taskqueue import make_celery, record_message
from tests.support.servers import Servers, base_settings

# Fields that differ between any two messages: fresh UUIDs, and the sender's host and pid;
# and the arguments as Flower shows them, which the API shortens to the recording's IDs.
PER_MESSAGE = {"delivery_tag", "reply_to", "origin", "argsrepr"}


@pytest.fixture
def idle_settings(servers: Servers, tmp_path: object) -> Iterator[Settings]:
    """Settings on a broker database no worker reads, emptied afterwards."""
    url = servers.broker.url.rsplit("/", 1)[0] + "/7"
    yield base_settings(servers, tmp_path, broker_url=url)  # type: ignore[arg-type]
    redis.Redis.from_url(url).flushdb()


def pushed(settings: Settings) -> dict[str, Any]:
    """The one message waiting in the record queue, decoded."""
    state = redis.Redis.from_url(str(settings.broker_url))
    raw = state.rpop(keys.RECORD_QUEUE)
    assert isinstance(raw, bytes)
    return dict(json.loads(raw))


def without_per_message(message: dict[str, Any]) -> dict[str, Any]:
    """The message with the fields that always differ taken out."""
    return {
        "body": message["body"],
        "content-type": message["content-type"],
        "content-encoding": message["content-encoding"],
        "headers": {k: v for k, v in message["headers"].items() if k not in PER_MESSAGE},
        "properties": {k: v for k, v in message["properties"].items() if k not in PER_MESSAGE},
    }


def test_the_built_message_matches_what_send_task_pushes(idle_settings: Settings) -> None:
    """Same body, headers and properties, so any Celery worker (and Flower) reads it alike."""
    app = make_celery(idle_settings)
    summary = {"recording_id": "a" * 32, "camera_id": "lane-1"}
    job = {**summary, "metadata": {"sku": "123", "nested": [1, 2.5, None]}}
    app.send_task(
        keys.RECORD_TASK, args=[job], task_id="a" * 32, queue=keys.RECORD_QUEUE, retry=False
    )
    sent = pushed(idle_settings)
    built = json.loads(record_message(app, job, "a" * 32))
    assert without_per_message(built) == without_per_message(sent)
    assert built["headers"]["argsrepr"] == repr([{**summary, "transaction_id": None}])
    assert built["properties"]["reply_to"] == sent["properties"]["reply_to"]
