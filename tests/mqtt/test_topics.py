"""The topic layout as a table: which topics name a camera's (or a lane's) events, and where
replies go."""

from __future__ import annotations

import pytest

from services.mqtt.bridge import DeadLetterError, Topics

TOPICS = Topics("sco", "sco/deadletter")


@pytest.mark.parametrize(
    ("topic", "target"),
    [
        ("sco/lane-1/events", ("camera_id", "lane-1")),
        ("sco/LANE_7/events", ("camera_id", "LANE_7")),
        ("sco/lanes/lane-3/events", ("lane_id", "lane-3")),
    ],
)
def test_an_events_topic_names_its_camera_or_lane(topic: str, target: tuple[str, str]) -> None:
    """`<prefix>/<camera>/events` gives the camera, `<prefix>/lanes/<lane>/events` the lane."""
    assert TOPICS.target_of(topic) == target


@pytest.mark.parametrize(
    "topic",
    ["sco/lane-1/recordings/x", "other/lane-1/events", "sco/events", "sco/a/b/events",
     "sco/lanes/lane-1/events/abc"],
)  # fmt: skip
def test_any_other_topic_is_a_dead_letter(topic: str) -> None:
    """A message on a topic that is not an events topic cannot become an event."""
    with pytest.raises(DeadLetterError):
        TOPICS.target_of(topic)


def test_replies_go_to_the_recordings_topic_of_the_camera() -> None:
    """One topic per recording, under its camera; subscribing to events never sees them."""
    assert TOPICS.reply("lane-1", "abc") == "sco/lane-1/recordings/abc"
    assert TOPICS.lane_reply("lane-1", "e1") == "sco/lanes/lane-1/events/e1"
    assert TOPICS.events == ["sco/+/events", "sco/lanes/+/events"]
