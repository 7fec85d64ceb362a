"""Waiting on real things: a condition, a recording's final state. Bounded, never open-ended."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from services.kernel.contracts import FINAL_STATUSES

FINAL = {status.value for status in FINAL_STATUSES}


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll until the condition holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_buffered(client: httpx.Client, frames: int, timeout: float = 30.0) -> None:
    """Until the API is ready and every camera buffers at least `frames` frames.

    Ready means a fresh frame, not a full window: an event posted in the first moments of a
    capture is rightly partial, so a test that wants `complete` waits for the window.
    """

    def buffered() -> bool:
        if client.get("/readyz").status_code != 200:
            return False
        cameras = client.get("/v1/cameras").json()
        return bool(cameras) and all(camera["buffer_length"] >= frames for camera in cameras)

    wait_until(buffered, timeout, f"{frames} frames buffered")


def wait_final(client: httpx.Client, recording_id: str, timeout: float = 60.0) -> dict[str, object]:
    """Poll a recording until it is complete, partial or failed."""
    deadline = time.monotonic() + timeout
    while True:
        recording: dict[str, object] = client.get(f"/v1/recordings/{recording_id}").json()
        if recording["status"] in FINAL:
            return recording
        assert time.monotonic() < deadline, f"recording stuck: {recording}"
        time.sleep(0.05)
