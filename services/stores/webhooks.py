"""Webhook deliveries in the state store: the outbox every finalising script appends to,
the deliveries due (a sorted set by when), each one's failures, the dead letters and the
counts. services/webhooks/delivery.py sends them."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import redis
from pydantic import BaseModel

from services.kernel import keys
from services.kernel.contracts import from_us
from services.kernel.settings import Settings, Webhook
from services.stores.scripts import WEBHOOK_CLAIM, WEBHOOK_EXPAND

EXPAND_BATCH = 500  # recordings moved from the outbox per look
CLAIM_LIMIT = 200  # deliveries sent per look


class DeadLetter(BaseModel):
    """A delivery given up on: which recording, to which URL, how it kept failing."""

    delivery: str
    recording_id: str
    webhook: str
    url: str
    attempts: int
    first_failed_at: datetime
    failed_at: datetime
    last_error: str


class WebhookStore:
    """The deliveries' state in the state store: outbox, due set, failures, dead letters."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._expand = client.register_script(WEBHOOK_EXPAND.source)
        self._claim = client.register_script(WEBHOOK_CLAIM.source)

    def expand(self, hook_ids: list[str], now_ms: int, batch: int = EXPAND_BATCH) -> int:
        """Move final recordings from the outbox into deliveries due now; how many moved.
        With no webhook configured the outbox is simply emptied."""
        script_keys, args = WEBHOOK_EXPAND.bind(
            outbox=keys.WEBHOOK_OUTBOX, due=keys.WEBHOOK_DUE, now_ms=now_ms, batch=batch,
            hook_ids=hook_ids,
        )  # fmt: skip
        return int(cast("int", self._expand(keys=script_keys, args=args)))

    def claim(self, now_ms: int, lease_ms: int, limit: int = CLAIM_LIMIT) -> list[str]:
        """The deliveries due now, each leased so no other look sends it meanwhile."""
        script_keys, args = WEBHOOK_CLAIM.bind(
            due=keys.WEBHOOK_DUE, now_ms=now_ms, lease_until_ms=now_ms + lease_ms, limit=limit
        )
        replies = cast("list[bytes]", self._claim(keys=script_keys, args=args))
        return [reply.decode() for reply in replies]

    def pending(self, delivery: str) -> bool:
        """Whether the delivery still waits to be delivered."""
        return self._redis.zscore(keys.WEBHOOK_DUE, delivery) is not None

    def lock(self, delivery: str, seconds: float) -> bool:
        """Take the delivery's sending lock; False if another try holds it."""
        return bool(
            self._redis.set(keys.webhook_sending(delivery), 1, nx=True, px=int(seconds * 1000))
        )

    def unlock(self, delivery: str) -> None:
        """Release the sending lock."""
        self._redis.delete(keys.webhook_sending(delivery))

    def delivered(self, delivery: str, hook_id: str) -> None:
        """The receiver took it: the delivery is done."""
        pipe = self._redis.pipeline()
        pipe.zrem(keys.WEBHOOK_DUE, delivery)
        pipe.delete(keys.webhook_attempts(delivery))
        pipe.hincrby(keys.WEBHOOK_COUNTS, f"{hook_id}|delivered", 1)
        pipe.execute()

    def dropped(self, delivery: str) -> None:
        """Nothing left to deliver (its recording or its webhook is gone)."""
        pipe = self._redis.pipeline()
        pipe.zrem(keys.WEBHOOK_DUE, delivery)
        pipe.delete(keys.webhook_attempts(delivery))
        pipe.execute()

    def failed(
        self, delivery: str, hook: Webhook, error: str, now_ms: int, settings: Settings
    ) -> DeadLetter | None:
        """Count a failed try: due again after the backoff, or a dead letter (returned) once
        it has failed for longer than SCO_WEBHOOK_GIVE_UP_AFTER."""
        attempts_key = keys.webhook_attempts(delivery)
        pipe = self._redis.pipeline()
        pipe.hsetnx(attempts_key, "first_ms", now_ms)
        pipe.hincrby(attempts_key, "attempts", 1)
        pipe.hset(attempts_key, "last_error", error[:500])
        pipe.hget(attempts_key, "first_ms")
        _, attempts, _, first = pipe.execute()
        first_ms = int(first)
        if now_ms - first_ms >= settings.webhook_give_up_after * 1000:
            letter = DeadLetter(
                delivery=delivery, recording_id=delivery.split(":", 1)[0], webhook=hook.id,
                url=hook.url, attempts=int(attempts), first_failed_at=from_us(first_ms * 1000),
                failed_at=from_us(now_ms * 1000), last_error=error[:500],
            )  # fmt: skip
            pipe = self._redis.pipeline()
            pipe.zrem(keys.WEBHOOK_DUE, delivery)
            pipe.delete(attempts_key)
            pipe.hset(keys.WEBHOOK_FAILED, delivery, letter.model_dump_json())
            pipe.zadd(keys.WEBHOOK_FAILED_AT, {delivery: now_ms})
            pipe.hincrby(keys.WEBHOOK_COUNTS, f"{hook.id}|failed", 1)
            pipe.execute()
            return letter
        wait = min(
            settings.webhook_backoff * 2 ** (int(attempts) - 1), settings.webhook_max_backoff
        )
        pipe = self._redis.pipeline()
        pipe.zadd(keys.WEBHOOK_DUE, {delivery: now_ms + int(wait * 1000)}, xx=True)
        pipe.hincrby(keys.WEBHOOK_COUNTS, f"{hook.id}|retried", 1)
        pipe.execute()
        return None

    def dead_letters(self) -> list[DeadLetter]:
        """Deliveries given up on, oldest failure first."""
        order = [
            item.decode()
            for item in cast("list[bytes]", self._redis.zrange(keys.WEBHOOK_FAILED_AT, 0, -1))
        ]
        raw = cast("dict[bytes, bytes]", self._redis.hgetall(keys.WEBHOOK_FAILED))
        letters = {
            key.decode(): DeadLetter.model_validate_json(value) for key, value in raw.items()
        }
        return [letters[delivery] for delivery in order if delivery in letters]

    def replay(self, deliveries: list[str], now_ms: int) -> list[str]:
        """Make dead letters due now, with a fresh count of failures; the ones replayed."""
        replayed = []
        for delivery in deliveries:
            pipe = self._redis.pipeline()
            pipe.hdel(keys.WEBHOOK_FAILED, delivery)
            pipe.zrem(keys.WEBHOOK_FAILED_AT, delivery)
            removed, _ = pipe.execute()
            if removed:
                self._redis.zadd(keys.WEBHOOK_DUE, {delivery: now_ms})
                replayed.append(delivery)
        return replayed

    def forget_dead_letters(self, before_ms: int) -> int:
        """Drop dead letters older than `before_ms`: the list stays bounded."""
        old = cast(
            "list[bytes]", self._redis.zrangebyscore(keys.WEBHOOK_FAILED_AT, "-inf", before_ms)
        )
        if not old:
            return 0
        pipe = self._redis.pipeline()
        pipe.hdel(keys.WEBHOOK_FAILED, *old)
        pipe.zrem(keys.WEBHOOK_FAILED_AT, *old)
        pipe.execute()
        return len(old)

    def counts(self) -> dict[tuple[str, str], int]:
        """Deliveries ever, by (webhook id, outcome): delivered, retried, failed."""
        return counts_of(self._redis.hgetall(keys.WEBHOOK_COUNTS))


def counts_of(raw: object) -> dict[tuple[str, str], int]:
    """The counts hash (`webhook|outcome` -> n), as HGETALL returns it, by (webhook, outcome)."""
    counted = {}
    for field, value in cast("dict[bytes, bytes]", raw).items():
        hook, _, outcome = field.decode().partition("|")
        counted[(hook, outcome)] = int(value)
    return counted
