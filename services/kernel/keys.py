"""Every Redis key, stream name, queue and Celery task name, in one place."""

from __future__ import annotations

PREFIX = "sco"

# Celery.
RECORD_TASK = "sco.record"
RECORD_QUEUE = "sco-recordings"
# kombu's Redis transport keeps each delivered, unacknowledged message here until its ack:
# a hash delivery tag -> [message, exchange, routing key], and a sorted set of delivery times.
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
# The job message of every recording not final yet, as its event queued it: a hash recording
# ID -> message. kombu can lose a message between BRPOP and its unacked write; the takeover
# queues a recording's message again when no copy is left (services/worker/liveness.py).
JOB_MESSAGES = f"{PREFIX}:job-messages"


# Worker liveness: each worker node lists the delivery tags it holds, under a key that
# expires unless the worker keeps writing it. A message held by no live worker is orphaned.
WORKERS = f"{PREFIX}:workers"
TAKEOVER_LOCK = f"{PREFIX}:workers:takeover"


def worker_alive(node: str) -> str:
    """Expiring JSON {pid, tags} a worker node rewrites every heartbeat."""
    return f"{PREFIX}:worker:{node}:alive"


# Frame store (disposable, no persistence).
def frame_stream(camera_id: str) -> str:
    """The capped stream of raw frames of one camera."""
    return f"{PREFIX}:frames:{camera_id}"


def frame_index(camera_id: str) -> str:
    """Sorted set beside the stream: member = stream ID, score = capture time (µs)."""
    return f"{PREFIX}:frames:{camera_id}:index"


def pins(camera_id: str) -> str:
    """Sorted set of live pins: score = window's first µs, member =
    `recording_id|moment_us|frames_after|deadline_ms`."""
    return f"{PREFIX}:pins:{camera_id}"


def pin_owner(recording_id: str) -> str:
    """The token of the attempt that may move a recording's pin (expires after the pin)."""
    return f"{PREFIX}:pin-owner:{recording_id}"


def camera_status(camera_id: str) -> str:
    """String holding the capture's heartbeat for one camera, as CameraStatus JSON."""
    return f"{PREFIX}:camera:{camera_id}:status"


# State store (durable: AOF on that instance).
def recording(recording_id: str) -> str:
    """Hash with one recording's status."""
    return f"{PREFIX}:recording:{recording_id}"


RECORDINGS_ALL = f"{PREFIX}:recordings"
# Recordings not final yet, scored by their deadline (ms): the sweep settles overdue ones.
RECORDINGS_OPEN = f"{PREFIX}:open-recordings"


def recordings_of(camera_id: str) -> str:
    """Sorted set of one camera's recording IDs by received time (ms)."""
    return f"{PREFIX}:recordings:{camera_id}"


def transaction(transaction_id: str) -> str:
    """Sorted set of the recordings of one transaction by received time (ms): the search
    by transaction is an index hit."""
    return f"{PREFIX}:transaction:{transaction_id}"


# Retention: what the prune may delete, what recordings weigh, what it deleted and why.
# Final recordings not on hold, scored by received time (ms): the only candidates of a rule.
RETENTION = f"{PREFIX}:retention"


def retention_of(camera_id: str) -> str:
    """The camera's part of RETENTION."""
    return f"{PREFIX}:retention:{camera_id}"


def held_of(camera_id: str) -> str:
    """Set of the camera's recordings on hold."""
    return f"{PREFIX}:held:{camera_id}"


def gone(recording_id: str) -> str:
    """Expiring hash left by a deleted recording: camera, rule, reason, when."""
    return f"{PREFIX}:gone:{recording_id}"


USAGE_BYTES = f"{PREFIX}:usage:bytes"  # hash camera -> bytes of its recordings on disk
DELETIONS = f"{PREFIX}:deletions"  # hash "camera|rule" -> recordings deleted, ever
DISK = f"{PREFIX}:disk"  # expiring JSON DiskStatus written by each prune pass
PRUNE_LOCK = f"{PREFIX}:prune:lock"
MAINTENANCE_QUEUE = "sco-maintenance"
PRUNE_TASK = "sco.prune"
HOLD_TASK = "sco.write-hold"


# Webhooks: final recordings to tell (appended by every script that makes one final), each
# (recording, webhook) delivery due at its score (ms), its failures so far, the dead letters.
WEBHOOK_OUTBOX = f"{PREFIX}:webhooks:outbox"
WEBHOOK_DUE = f"{PREFIX}:webhooks:due"
WEBHOOK_FAILED = f"{PREFIX}:webhooks:failed"  # hash delivery -> JSON DeadLetter
WEBHOOK_FAILED_AT = f"{PREFIX}:webhooks:failed-at"  # its deliveries by failure time (ms)
WEBHOOK_COUNTS = f"{PREFIX}:webhooks:counts"  # hash "webhook|outcome" -> count, ever
WEBHOOK_QUEUE = "sco-webhooks"
WEBHOOK_FLUSH_TASK = "sco.webhooks.flush"
WEBHOOK_DELIVER_TASK = "sco.webhooks.deliver"


def webhook_attempts(delivery: str) -> str:
    """Hash of one delivery's failures: first_ms, attempts, last_error."""
    return f"{PREFIX}:webhook:{delivery}:attempts"


def webhook_sending(delivery: str) -> str:
    """Expiring lock held while one delivery is being sent: it is never sent twice at once."""
    return f"{PREFIX}:webhook:{delivery}:sending"


# MQTT ingest: recordings accepted over MQTT whose final status is still to be published.
MQTT_PENDING = f"{PREFIX}:mqtt:pending"
MQTT_ALIVE_SECONDS = 15


def mqtt_alive(client_id: str) -> str:
    """Expiring key the MQTT ingest refreshes while it is connected; its healthcheck reads it."""
    return f"{PREFIX}:mqtt:{client_id}:alive"


def idempotency(camera_id: str, key: str) -> str:
    """String holding the recording ID first given to an idempotency key."""
    return f"{PREFIX}:idempotency:{camera_id}:{key}"


def lane_idempotency(lane_id: str, key: str) -> str:
    """String holding the event ID first given to an idempotency key of a lane's events."""
    return f"{PREFIX}:idempotency:lane:{lane_id}:{key}"


EVENT_PREFIX = f"{PREFIX}:event:"


def event(event_id: str) -> str:
    """Hash of a lane event: lane, transaction, receipt, its recordings (JSON) and how many
    of them still exist (`live`); it expires once retention has deleted the last."""
    return f"{EVENT_PREFIX}{event_id}"
