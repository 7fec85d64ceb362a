"""Typed values that cross a boundary: the event body, the job, the recording and its manifest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from services.kernel.settings import CAMERA_ID_PATTERN

TRANSACTION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
RECORDING_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_METADATA_DEPTH = 16


def check_json_value(value: object, max_depth: int) -> None:
    """Refuse a JSON value nested deeper than max_depth, or holding text that cannot be
    written as UTF-8 (a lone surrogate such as "\\ud800", which JSON allows).

    Iterative: a recursive walk overflows Python's stack on a few hundred levels, well
    within the body limit.
    """
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth + 1 > max_depth:
                raise ValueError(f"metadata is nested deeper than {max_depth} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise ValueError(
                    "metadata holds text that is not valid Unicode (a lone surrogate)"
                ) from None


class Status(str, Enum):
    """Where a recording is in its life; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETE = "complete"
    PARTIAL = "partial"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """True once nothing will change the recording any more."""
        return self in FINAL_STATUSES


# The statuses nothing changes any more; the Lua scripts get the same set (stores/scripts.py).
FINAL_STATUSES = frozenset({Status.COMPLETE, Status.PARTIAL, Status.FAILED})


class HoldIn(BaseModel):
    """A request to keep a recording whatever the retention rules say."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why, e.g. the case number.")
    by: str = Field(min_length=1, max_length=100, description="Who asked.")


class Hold(HoldIn):
    """A hold as stored: what was asked, and when."""

    at: datetime


EVENT_HOLD_BY = "event"


class EventIn(BaseModel):
    """What the cashier system sends, over HTTP or MQTT; every field is optional."""

    model_config = ConfigDict(extra="forbid")

    camera_id: str | None = Field(default=None, pattern=CAMERA_ID_PATTERN)
    lane_id: str | None = Field(
        default=None, pattern=CAMERA_ID_PATTERN,
        description="Record every camera of this lane (instead of camera_id).",
    )  # fmt: skip
    transaction_id: str | None = Field(default=None, pattern=TRANSACTION_ID_PATTERN)
    event_time: AwareDatetime | None = Field(
        default=None, description="RFC 3339 with a UTC offset; the moment when trusted."
    )
    frames_before: int | None = Field(default=None, ge=1)
    frames_after: int = Field(default=0, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    hold: bool = Field(default=False, description="Hold the recording from the start.")

    @field_validator("metadata")
    @classmethod
    def _limit_depth(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value, MAX_METADATA_DEPTH)
        return value

    @model_validator(mode="after")
    def _camera_or_lane(self) -> EventIn:
        if self.camera_id is not None and self.lane_id is not None:
            raise ValueError("name camera_id or lane_id, not both")
        return self


class EventAccepted(BaseModel):
    """The 202 answer to an event."""

    recording_id: str
    status: Status
    status_url: str


class LaneRecording(BaseModel):
    """One camera's recording of a lane event."""

    camera_id: str
    recording_id: str
    status: Status
    status_url: str


class LaneEventAccepted(BaseModel):
    """The 202 answer to a lane event: one recording per camera of the lane."""

    event_id: str
    lane_id: str
    status: Status
    status_url: str
    recordings: list[LaneRecording]


def status_of_all(statuses: list[Status]) -> Status:
    """A lane event's status from its recordings': final once all are, and then complete
    only if all are, failed only if all are, partial otherwise."""
    if not all(status.is_final for status in statuses):
        return Status.RUNNING if Status.RUNNING in statuses else Status.QUEUED
    if all(status == Status.COMPLETE for status in statuses):
        return Status.COMPLETE
    if all(status == Status.FAILED for status in statuses):
        return Status.FAILED
    return Status.PARTIAL


class RecordingJob(BaseModel):
    """The Celery payload: references to frames, never frame bytes."""

    version: Literal[1] = 1
    recording_id: str = Field(pattern=RECORDING_ID_PATTERN)
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    event_id: str | None = Field(default=None, description="The lane event it is part of.")
    lane_id: str | None = None
    transaction_id: str | None = None
    event_us: int = Field(description="The event's moment, µs since the epoch.")
    event_time_source: Literal["received", "cashier"]
    event_time_sent: str | None = None
    received_at: datetime
    frames_before: int = Field(ge=1)
    frames_after: int = Field(ge=0)
    pinned_first_id: str | None = Field(description="Oldest frame pinned at receipt.")
    pinned_count: int = Field(ge=0, description="Frames at or before the moment at receipt.")
    buffered_at_pin: int = Field(ge=0, description="Frames in the buffer at receipt.")
    pin_member: str
    pin_deadline_ms: int
    metadata: dict[str, Any]
    hold: Hold | None = None


class FrameRecord(BaseModel):
    """One saved frame, as listed in metadata.json."""

    file: str
    source_index: int
    sequence: int
    captured_at: datetime
    stream_id: str
    sha256: str
    width: int
    height: int


class Signature(BaseModel):
    """The box's signature of a manifest (services/kernel/signing.py says what it covers)."""

    algorithm: Literal["Ed25519"]
    public_key: str = Field(description="Base64 of the signer's raw public key.")
    value: str = Field(description="Base64 of the signature.")


class Manifest(BaseModel):
    """metadata.json: the metadata as received, the envelope, and the frames."""

    version: Literal[1] = 1
    recording_id: str
    camera_id: str
    event_id: str | None = Field(default=None, description="The lane event it is part of.")
    lane_id: str | None = None
    transaction_id: str | None
    event_time: datetime
    event_time_source: Literal["received", "cashier"]
    event_time_sent: str | None
    received_at: datetime
    written_at: datetime
    status: Status
    reason: str | None
    frames_requested: int
    frames_saved: int
    frames_before: int
    frames_after: int
    encoder: str
    frames: list[FrameRecord]
    metadata: dict[str, Any]
    hold: Hold | None = Field(default=None, description="Kept whatever retention says, and why.")
    signature: Signature | None = Field(
        default=None, description="Ed25519 over everything above but the hold."
    )


class Recording(BaseModel):
    """A recording's status as the API shows it."""

    recording_id: str
    camera_id: str
    event_id: str | None = Field(default=None, description="The lane event it is part of.")
    lane_id: str | None = None
    transaction_id: str | None = None
    status: Status
    reason: str | None = None
    frames_requested: int
    frames_saved: int | None = None
    path: str | None = None
    event_time: datetime
    received_at: datetime
    updated_at: datetime
    deadline: datetime | None = Field(
        default=None,
        description="Until when a worker may still be working on it; past it, "
        "a recording not final is settled as failed.",
    )
    deliveries: int | None = Field(
        default=None, description="How many times a worker started its job."
    )
    bytes: int | None = Field(default=None, description="Size of its folder on disk.")
    hold: Hold | None = Field(default=None, description="Kept whatever retention says, and why.")
    released: Hold | None = Field(default=None, description="The last hold's release: who, why.")
    metadata: dict[str, Any] | None = Field(
        default=None, description="The event's metadata, as the cashier system sent it."
    )


class LaneEvent(BaseModel):
    """A lane event as `GET /v1/events/{event_id}` shows it: its recordings, one per camera."""

    event_id: str
    lane_id: str
    transaction_id: str | None = None
    received_at: datetime
    status: Status
    recordings: list[Recording]
    deleted: list[str] = Field(
        default_factory=list, description="Recordings of it that retention has deleted."
    )


class Gone(BaseModel):
    """What is left of a recording that retention deleted: enough to answer 410."""

    recording_id: str
    camera_id: str
    rule: str
    reason: str
    deleted_at: datetime

    @property
    def message(self) -> str:
        """The 410 answer's detail."""
        return (
            f"recording {self.recording_id} was deleted by retention on "
            f"{self.deleted_at.isoformat(timespec='seconds')}: {self.reason}"
        )


class DiskStatus(BaseModel):
    """The recordings filesystem as the last prune pass left it; the API admits events by it."""

    free_bytes: int
    total_bytes: int
    min_free_bytes: int
    full: bool = Field(description="Under the floor with nothing left that may be deleted.")
    reason: str | None = None
    checked_at: datetime


class CameraStatus(BaseModel):
    """The capture's heartbeat for one camera."""

    version: Literal[1] = 1
    camera_id: str
    source: str
    state: Literal["starting", "running", "reconnecting", "stopped", "failed"]
    fps: float = 0.0
    width: int = 0
    height: int = 0
    frames_read: int = 0
    late_frames: int = 0
    dropped_frames: int = 0
    lag_ms: float = Field(
        default=0.0, description="How long after the camera saw the last frame it was pushed."
    )
    errors: int = 0
    last_error: str | None = None
    last_frame_at: datetime | None = None
    buffer_cap: int = 0
    updated_at: datetime


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def from_us(micros: int) -> datetime:
    """A UTC datetime from µs since the epoch, exactly (a float would round some µs)."""
    return EPOCH + timedelta(microseconds=micros)


def to_us(moment: datetime) -> int:
    """µs since the epoch from an aware datetime, exactly."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(tz=timezone.utc)
