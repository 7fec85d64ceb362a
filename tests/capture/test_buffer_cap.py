"""How many frames the stream keeps, and its hard cap, as a table of settings."""

from __future__ import annotations

import pytest

from services.capture.service import buffer_cap, frames_kept, reconnect_delay
from services.kernel.settings import Settings


@pytest.mark.parametrize(
    ("overrides", "fps", "kept", "cap"),
    [
        ({}, 25.0, 30, 30 + 100 + 750),
        ({"frames": 10, "max_frames_after": 0, "max_delay": 2}, 25.0, 10, 10 + 0 + 50),
        ({"trust_event_time": True, "max_event_age": 1.0}, 25.0, 55, 55 + 100 + 750),
        ({"max_buffer_frames": 200}, 25.0, 30, 200),
        ({"max_buffer_frames": 5}, 25.0, 30, 30),  # never below what steady state keeps
        ({"max_delay": 1}, 7.5, 30, 30 + 100 + 8),
    ],
)
def test_the_stream_keeps_n_and_is_capped_by_what_a_pin_may_hold(
    overrides: dict[str, object], fps: float, kept: int, cap: int
) -> None:
    """N frames in steady state (more for trusted event times); the cap adds what pins hold."""
    settings = Settings.model_validate({"redis_url": "redis://unused", **overrides})
    assert frames_kept(settings, fps) == kept
    assert buffer_cap(settings, fps) == cap


@pytest.mark.parametrize(("failures", "delay"), [(0, 0.5), (1, 1.0), (4, 8.0), (5, 10.0)])
def test_a_live_source_is_reopened_after_a_growing_delay(failures: int, delay: float) -> None:
    """0.5 s after the first failure, doubling, at most 10 s."""
    assert reconnect_delay(failures) == delay
