"""The one backoff: doubling from a base, capped, optionally jittered into its upper half."""

from __future__ import annotations

import pytest

from services.kernel.backoff import compute_backoff


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "expected"),
    [(0, 1.0, 30.0, 1.0), (1, 1.0, 30.0, 2.0), (4, 1.0, 30.0, 16.0), (5, 1.0, 30.0, 30.0),
     (50, 1.0, 30.0, 30.0), (0, 0.5, 10.0, 0.5), (3, 0.5, 10.0, 4.0), (-1, 1.0, 30.0, 1.0)],
)  # fmt: skip
def test_the_wait_doubles_up_to_its_cap(
    attempt: int, base: float, cap: float, expected: float
) -> None:
    """Attempt k waits base x 2^k seconds, never more than the cap."""
    assert compute_backoff(attempt, base=base, cap=cap) == expected


def test_jitter_stays_in_the_upper_half() -> None:
    """Jittered waits spread over [d/2, d], so clients that failed together come back apart."""
    waits = {compute_backoff(3, jitter=True) for _ in range(200)}
    assert all(4.0 <= wait <= 8.0 for wait in waits)
    assert len(waits) > 1
