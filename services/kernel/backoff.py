"""How long to wait before the next attempt: one exponential backoff for every retry loop."""

from __future__ import annotations

import random


def compute_backoff(
    attempt: int, *, base: float = 1.0, cap: float = 30.0, jitter: bool = False
) -> float:
    """Seconds before attempt `attempt + 1`: base doubling per attempt, at most `cap`.

    With jitter the wait is drawn from its upper half, so that many clients that failed
    together do not all come back at the same moment.
    """
    delay = min(cap, base * 2.0 ** max(0, attempt))
    if jitter:
        delay = random.uniform(delay / 2, delay)  # noqa: S311  # spreading retries, not secrets
    return delay
