"""Webhook deliveries as state: the outbox, backoff that doubles, dead letters and replays,
on the stores' Lua and a fake clock; and the signature, as the README tells receivers to check
it."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from services.kernel import keys
from services.kernel.contracts import Recording, Status, utcnow
from services.kernel.settings import Settings, Webhook
from services.stores.recordings import RecordingStore
from services.stores.webhooks import WebhookStore
from services.webhooks.delivery import SIGNATURE_HEADER, Notifier, sign, verify
from tests.support.storeredis import StoreRedis

README = Path(__file__).parent.parent.parent / "README.md"
URL = "http://receiver.test/hooks"
SECRET = "a-secret-of-some-length"  # noqa: S105  # the test receiver's


def readme_verify() -> Any:
    """The receiver's `verify` exactly as the README prints it."""
    block = re.search(r"```python\n(import hashlib.*?)```", README.read_text(), re.DOTALL)
    assert block is not None, "the README's verification snippet"
    scope: dict[str, Any] = {}
    exec(block.group(1), scope)  # noqa: S102  # our own README
    return scope["verify"]


def test_the_readme_snippet_verifies_our_signatures_and_refuses_others() -> None:
    body = b'{"recording_id": "abc"}'
    header = sign(SECRET.encode(), body, int(time.time()))
    check = readme_verify()
    assert check(SECRET.encode(), body, header)
    assert verify(SECRET.encode(), body, header)
    assert not check(SECRET.encode(), body + b" ", header)
    assert not check(b"another-secret-of-some-length", body, header)
    stale = sign(SECRET.encode(), body, 1_000_000)
    assert not check(SECRET.encode(), body, stale)
    assert not verify(SECRET.encode(), body, stale)
    assert (
        sign(b"k", b"{}", 1)
        == "t=1,v1=" + __import__("hmac").new(b"k", b"1.{}", "sha256").hexdigest()
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def notifier(
    store_redis: StoreRedis, answers: list[int], **overrides: Any
) -> tuple[Notifier, Clock, list[httpx.Request]]:
    settings = Settings(
        webhooks=[Webhook(url=URL, secret=SecretStr(SECRET))], webhook_backoff=5,
        webhook_max_backoff=20, webhook_give_up_after=60, public_url="http://box:8000", **overrides,
    )  # fmt: skip
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(answers.pop(0) if answers else 200)

    clock = Clock()
    http = httpx.Client(transport=httpx.MockTransport(handle))
    client = store_redis.client
    return (
        Notifier(settings, WebhookStore(client), RecordingStore(client), http, clock),
        clock,
        sent,
    )


def final_recording(store_redis: StoreRedis, recording_id: str) -> None:
    """A final recording, and the outbox entry its final status put there."""
    now = utcnow()
    recording = Recording(
        recording_id=recording_id, camera_id="lane-1", status=Status.COMPLETE,
        frames_requested=3, frames_saved=3, event_time=now, received_at=now, updated_at=now,
        metadata={"sku": 1},
    )  # fmt: skip
    RecordingStore(store_redis.client).create(recording, None, 60)
    store_redis.client.rpush(keys.WEBHOOK_OUTBOX, recording_id)


def test_a_failing_receiver_is_retried_with_doubling_backoff_then_delivered_once(
    store_redis: StoreRedis,
) -> None:
    hooks, clock, sent = notifier(store_redis, [500, 502])
    final_recording(store_redis, "a" * 32)
    (delivery,) = hooks.flush()
    assert delivery == f"{'a' * 32}:{hooks.settings.webhooks[0].id}"
    assert hooks.flush() == []  # leased: not sent twice while on its way
    assert hooks.deliver(delivery) is not None
    assert hooks.flush() == []  # due again in 5 s
    clock.now += 5
    (again,) = hooks.flush()
    hooks.deliver(again)
    clock.now += 5
    assert hooks.flush() == []  # the second wait is 10 s
    clock.now += 5
    (third,) = hooks.flush()
    outcome = hooks.deliver(third)
    assert outcome is not None
    assert outcome.delivered
    assert len(sent) == 3
    assert hooks.deliver(third) is None  # delivered: a late duplicate task sends nothing
    assert hooks.store.counts() == {
        (hooks.settings.webhooks[0].id, "retried"): 2,
        (hooks.settings.webhooks[0].id, "delivered"): 1,
    }
    body = sent[0].content
    assert verify(SECRET.encode(), body, sent[0].headers[SIGNATURE_HEADER], tolerance=1e12)
    assert sent[0].headers["X-SCO-Delivery"] == delivery
    assert b'"download": "http://box:8000/v1/recordings/' in body


def test_a_receiver_failing_past_the_cap_becomes_a_dead_letter_and_replays(
    store_redis: StoreRedis,
) -> None:
    hooks, clock, sent = notifier(store_redis, [500] * 100)
    final_recording(store_redis, "b" * 32)
    for _ in range(10):
        for delivery in hooks.flush():
            hooks.deliver(delivery)
        clock.now += 20
    (letter,) = hooks.store.dead_letters()
    assert (letter.recording_id, letter.url, letter.last_error) == ("b" * 32, URL, "HTTP 500")
    assert letter.attempts == len(sent) >= 4  # 0, 5, 15, 35, 55 s ... then 60 s
    assert hooks.flush() == []
    assert hooks.store.replay([letter.delivery, "nope:x"], int(clock.now * 1000)) == [
        letter.delivery
    ]
    sent.clear()
    (delivery,) = hooks.flush()
    hooks.deliver(delivery)
    assert hooks.store.dead_letters() == []


def test_without_webhooks_the_outbox_is_emptied_and_nothing_is_sent(
    store_redis: StoreRedis,
) -> None:
    hooks, _, sent = notifier(store_redis, [])
    hooks.hooks = {}
    final_recording(store_redis, "c" * 32)
    assert hooks.flush() == []
    assert store_redis.client.llen(keys.WEBHOOK_OUTBOX) == 0
    assert sent == []
