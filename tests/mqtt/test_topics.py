"""The topic layout as a table: which topics name a camera's events, and where replies go."""

from __future__ import annotations

import pytest

from services.mqtt.bridge import DeadLetterError, Topics

TOPICS = Topics("sco", "sco/deadletter")


@pytest.mark.parametrize(
    ("topic", "camera"),
    [("sco/lane-1/events", "lane-1"), ("sco/LANE_7/events", "LANE_7")],
)
def test_an_events_topic_names_its_camera(topic: str, camera: str) -> None:
    """`<prefix>/<camera>/events` gives the camera."""
    assert TOPICS.camera_of(topic) == camera


@pytest.mark.parametrize(
    "topic", ["sco/lane-1/recordings/x", "other/lane-1/events", "sco/events", "sco/a/b/events"]
)
def test_any_other_topic_is_a_dead_letter(topic: str) -> None:
    """A message on a topic that is not a camera's events topic cannot become an event."""
    with pytest.raises(DeadLetterError):
        TOPICS.camera_of(topic)


def test_replies_go_to_the_recordings_topic_of_the_camera() -> None:
    """One topic per recording, under its camera; subscribing to events never sees them."""
    assert TOPICS.reply("lane-1", "abc") == "sco/lane-1/recordings/abc"
    assert TOPICS.events == "sco/+/events"
