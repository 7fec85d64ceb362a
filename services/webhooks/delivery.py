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
from typing import Any

import httpx

from services.kernel.contracts import Recording
from services.kernel.settings import Settings, Webhook, pasteable_url
from services.stores.recordings import RecordingStore
from services.stores.webhooks import EXPAND_BATCH, WebhookStore

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-SCO-Signature"
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


@dataclass(frozen=True)
class Outcome:
    """What one try of a delivery came to."""

    delivered: bool
    error: str | None = None


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
