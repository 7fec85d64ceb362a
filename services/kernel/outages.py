"""What counts as a store outage: a reason to answer 503 or retry, never to fail for good."""

from __future__ import annotations

import redis

# How long a client told 503 should wait before it tries again.
RETRY_AFTER_SECONDS = 5

# The store went away for a moment, or is still loading its data.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
# Replies that mean "not now": out of memory (maxmemory), a replica that cannot take writes.
# Inside a Lua script Redis 6 wraps them in a plain error, so they are found by their code.
_NOT_NOW = ("OOM", "READONLY", "MASTERDOWN", "NOREPLICAS")


def is_outage(error: BaseException) -> bool:
    """True for an error that a later attempt may not meet."""
    if isinstance(error, (*TRANSIENT, redis.exceptions.OutOfMemoryError, redis.ReadOnlyError)):
        return True
    if isinstance(error, redis.ResponseError):
        text = str(error)
        return any(text.startswith(code) or f"-{code} " in text for code in _NOT_NOW)
    return False
