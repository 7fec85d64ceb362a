"""Completion webhooks: every final recording is POSTed, signed, to each configured URL.

The way a recording reaches a receiver, none of it on a recording's path:
1. every script that makes a recording final appends it to an outbox in the state store, in
   the same step (stores/scripts.py, `on_final`): a final state is never left untold;
2. a flush (sent by beat every SCO_WEBHOOK_INTERVAL) moves the outbox into a set of
   deliveries, one per (recording, webhook), scored by when each is due, and claims those due
   now for a lease, sending one deliver task each;
3. the deliver task POSTs the body with its signature. A 2xx ends the delivery. Anything else
   makes it due again after a backoff that doubles (SCO_WEBHOOK_BACKOFF up to
   SCO_WEBHOOK_MAX_BACKOFF); after SCO_WEBHOOK_GIVE_UP_AFTER of failures it becomes a dead
   letter, listed and replayed by `sco-recorder webhooks failed|replay`.
The tasks run in `sco-recorder notifier`, a Celery worker of its own with a thread pool on its
own queue, so a receiver that hangs never holds up a recording.

The signature is the Stripe scheme: `X-SCO-Signature: t=<unix seconds>,v1=<hex>`, where hex is
HMAC-SHA256(secret, "<t>.<raw body>").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import httpx
import redis
from pydantic import BaseModel

from services.kernel import keys
from services.kernel.contracts import Recording, from_us
from services.kernel.settings import Settings, Webhook, pasteable_url
from services.stores.recordings import RecordingStore
from services.stores.scripts import WEBHOOK_CLAIM, WEBHOOK_EXPAND

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-SCO-Signature"
EXPAND_BATCH = 500  # recordings moved from the outbox per look
CLAIM_LIMIT = 200  # deliveries sent per look
LEASE_MARGIN_SECONDS = 30.0  # a claimed delivery comes due again after 2 x timeout + this


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The X-SCO-Signature value of a body sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, body: bytes, header: str, tolerance: float = 300.0) -> bool:
    """What a receiver does: the header's HMAC matches and its time is recent."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    fresh = abs(time.time() - timestamp) <= tolerance
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


def payload(recording: Recording, base_url: str) -> dict[str, Any]:
    """The JSON body told of a final recording: what it is, how it ended, where its files are."""
    recording_url = f"{base_url}/v1/recordings/{recording.recording_id}"
    links = {
        "recording": recording_url,
        "download": f"{recording_url}/download",
        "thumbnail": f"{recording_url}/thumbnail",
        "frames": f"{recording_url}/frames/{{n}}",
        "page": f"{base_url}/#/recordings/{recording.recording_id}",
    }
    if recording.event_id:
        links["event"] = f"{base_url}/v1/events/{recording.event_id}"
    return {
        "type": "recording.final",
        "recording_id": recording.recording_id,
        "camera_id": recording.camera_id,
        "event_id": recording.event_id,
        "lane_id": recording.lane_id,
        "transaction_id": recording.transaction_id,
        "status": recording.status.value,
        "reason": recording.reason,
        "frames_requested": recording.frames_requested,
        "frames_saved": recording.frames_saved or 0,
        "event_time": recording.event_time.isoformat(),
        "received_at": recording.received_at.isoformat(),
        "metadata": recording.metadata or {},
        "links": links,
    }


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


@dataclass(frozen=True)
class Outcome:
    """What one try of a delivery came to."""

    delivered: bool
    error: str | None = None


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
        raw = cast("dict[bytes, bytes]", self._redis.hgetall(keys.WEBHOOK_COUNTS))
        counted = {}
        for field, value in raw.items():
            hook, _, outcome = field.decode().partition("|")
            counted[(hook, outcome)] = int(value)
        return counted


class Notifier:
    """Looks for due deliveries and sends them: the two webhook tasks' work."""

    def __init__(
        self,
        settings: Settings,
        store: WebhookStore,
        recordings: RecordingStore,
        http: httpx.Client,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.recordings = recordings
        self.http = http
        self.clock = clock
        self.hooks = {hook.id: hook for hook in settings.webhooks}
        self.base_url = (settings.public_url or pasteable_url(settings)).rstrip("/")

    @property
    def lease_seconds(self) -> float:
        """How long a claimed delivery is left to its deliver task."""
        return 2 * self.settings.webhook_timeout + LEASE_MARGIN_SECONDS

    def flush(self) -> list[str]:
        """Move the outbox into deliveries, claim those due; the ones to send now."""
        now_ms = int(self.clock() * 1000)
        while self.store.expand(list(self.hooks), now_ms) == EXPAND_BATCH:
            pass
        keep_ms = self.settings.tombstone_days * 86_400_000
        self.store.forget_dead_letters(int(now_ms - keep_ms))
        if not self.hooks:
            return []
        return self.store.claim(now_ms, int(self.lease_seconds * 1000))

    def deliver(self, delivery: str) -> Outcome | None:
        """Send one delivery, unless it was delivered (or is being sent) already."""
        recording_id, _, hook_id = delivery.partition(":")
        hook = self.hooks.get(hook_id)
        recording = self.recordings.get(recording_id)
        if hook is None or recording is None:  # the store file changed, or retention deleted it
            self.store.dropped(delivery)
            return None
        if not self.store.pending(delivery) or not self.store.lock(delivery, self.lease_seconds):
            return None
        try:
            body = json.dumps(payload(recording, self.base_url)).encode()
            outcome = self._post(hook, body, delivery)
            self._record(delivery, hook, outcome)
            return outcome
        finally:
            self.store.unlock(delivery)

    def _record(self, delivery: str, hook: Webhook, outcome: Outcome) -> None:
        """Count a try: done, due again after its backoff, or a dead letter."""
        recording_id = delivery.partition(":")[0]
        if outcome.delivered:
            self.store.delivered(delivery, hook.id)
            log.info("webhook %s: delivered %s", hook.id, recording_id)
            return
        error = outcome.error or "unknown"
        letter = self.store.failed(delivery, hook, error, int(self.clock() * 1000), self.settings)
        if letter is None:
            log.warning("webhook %s: %s failed (%s); will retry", hook.id, recording_id, error)
        else:
            log.error("webhook %s: gave up on %s after %d tries: %s", hook.id, recording_id,
                      letter.attempts, error)  # fmt: skip

    def _post(self, hook: Webhook, body: bytes, delivery: str) -> Outcome:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "sco-recorder-webhooks",
            "X-SCO-Delivery": delivery,
            SIGNATURE_HEADER: sign(hook.signing_secret(), body, int(self.clock())),
        }
        try:
            answer = self.http.post(
                hook.url, content=body, headers=headers, timeout=self.settings.webhook_timeout
            )
        except httpx.HTTPError as error:
            return Outcome(
                False, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            )
        if answer.is_success:
            return Outcome(True)
        return Outcome(False, f"HTTP {answer.status_code}")
