"""The one settings object: every service reads its configuration from here."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.kernel.redact import mask_credentials
from services.kernel.storefile import StoreFile, StoreFileError

CAMERA_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_CAMERA_ID = re.compile(CAMERA_ID_PATTERN)


class SettingsError(ValueError):
    """Raised when the configuration is invalid; the message names the offending setting."""


class CameraRetention(BaseModel):
    """One camera's retention, where it differs from SCO_RETENTION_DAYS / _MAX_BYTES."""

    model_config = ConfigDict(extra="forbid")

    days: float | None = Field(default=None, ge=0, description="0 = no age limit.")
    max_bytes: int | None = Field(default=None, ge=0, description="0 = no cap.")


class CameraSource(BaseModel):
    """One camera of a store file: its source, and settings where they differ for it."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, description="Video file, camera index, or RTSP/HTTP URL.")
    frames: int | None = Field(default=None, ge=1, le=1000, description="N for this camera.")
    fps: float | None = Field(default=None, gt=0, le=240, description="Frame rate override.")


class Webhook(BaseModel):
    """A URL told of every recording that ends final, signed with its secret."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://[^\s/]+", description="Where the POST goes.")
    secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 signing secret.")
    secret_file: Path | None = Field(
        default=None, exclude=True, description="A file holding the secret (read once, at start)."
    )

    @model_validator(mode="after")
    def _one_secret(self) -> Webhook:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret and secret_file")
        if self.secret_file is not None:
            try:
                text = self.secret_file.read_text().strip()
            except OSError as error:
                raise ValueError(f"cannot read {self.secret_file}: {error.strerror}") from None
            self.secret = SecretStr(text)
        if not self.secret or len(self.secret.get_secret_value()) < 16:  # noqa: PLR2004
            raise ValueError("the secret must be at least 16 characters")
        return self

    @property
    def id(self) -> str:
        """A short stable name for the URL: the key of its deliveries."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:12]

    def signing_secret(self) -> bytes:
        """The secret, as HMAC wants it."""
        assert self.secret is not None, "validated"
        return self.secret.get_secret_value().encode()


SECRETS = ("api_key", "ingest_keys", "read_keys", "mqtt_password")


class SecretFiles(PydanticBaseSettingsSource):
    """`SCO_<SECRET>_FILE=/run/secrets/…`: a secret setting read from a file, so it need not
    sit in the environment (Docker and compose secrets). The variable itself wins."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: __call__ reads every secret at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in SECRETS:
            variable = f"SCO_{name.upper()}_FILE"
            path = os.environ.get(variable)
            if not path:
                continue
            try:
                values[name] = Path(path).read_text().strip()
            except OSError as error:
                raise SettingsError(f"{variable}: cannot read {path}: {error.strerror}") from None
        return values


def config_path(init_kwargs: dict[str, Any]) -> Path | None:
    """The store file named by `--config` (a flag) or SCO_CONFIG, if any."""
    given = init_kwargs.get("config") or os.environ.get("SCO_CONFIG")
    return Path(given) if given else None


class StoreFileSource(PydanticBaseSettingsSource):
    """The store file's values, below flags and variables: `[defaults]` by setting name,
    the cameras, lanes and webhooks as their settings."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self.store = StoreFile.read(path, settings_cls)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: __call__ gives every value at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.store.values)


class Settings(BaseSettings):
    """Configuration shared by capture, API and worker; `SCO_*` variables mirror the CLI flags."""

    model_config = SettingsConfigDict(
        env_prefix="SCO_", extra="ignore", validate_default=True, populate_by_name=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, then SCO_* variables, then SCO_*_FILE secrets (Docker secrets), then the
        store file (SCO_CONFIG, `--config`)."""
        sources = [init_settings, env_settings, SecretFiles(settings_cls)]
        path = config_path(getattr(init_settings, "init_kwargs", {}))
        if path is not None:
            sources.append(StoreFileSource(settings_cls, path))
        return (*sources, dotenv_settings, file_secret_settings)

    config: Path | None = Field(
        default=None,
        description="Store file (TOML): cameras, lanes, webhooks and defaults for one store.",
    )

    # Frames: which camera, from which source, how many per recording.
    source: str = Field(default="sample", description="Video file, camera index, or RTSP/HTTP URL.")
    camera_id: str = Field(default="lane-1", description="Camera this capture feeds.")
    source_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a network source may stay silent before a reconnect.",
    )
    frame_format: Literal["bgr", "yuv"] = Field(
        default="yuv",
        description="Frames held as the decoder's YUV 4:2:0 where a file or stream decodes to "
        "it (PyAV): half the bytes to push, hold and read, the same PNGs; or always as BGR "
        "(OpenCV), as before.",
    )
    cameras: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Cameras the API accepts events for (comma-separated); default: camera_id.",
    )
    camera_sources: dict[str, CameraSource] = Field(
        default_factory=dict,
        description='Each camera\'s source, N and fps, JSON: {"lane-1-top": {"source": '
        '"rtsp://…", "frames": 30}}; the store file\'s [cameras] tables. `up` captures each.',
    )
    lanes: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Lanes and their cameras, JSON: {"lane-1": ["lane-1-top", "lane-1-bag"]}; '
        "an event naming lane_id records every camera of the lane.",
    )
    fps: float = Field(
        default=0, ge=0, le=240, description="Frame rate of the source; 0 = what it reports."
    )
    frames: int = Field(
        default=30, ge=1, le=1000, description="Frames before each event (N); the buffer length."
    )
    max_frames_after: int = Field(default=100, ge=0, description="Largest frames_after allowed.")

    # Redis: frames are disposable, jobs and state are not, so they may live apart.
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SCO_REDIS_URL", "REDIS_URL", "redis_url"),
        description="Frame store; unset means an embedded server (sco-recorder up only).",
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker and recording state; default: redis_url."
    )

    # The frame-window contract.
    max_delay: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a job may start after its event and still "
        "get every frame (pins expire after this).",
    )
    max_buffer_frames: int = Field(
        default=0, ge=0, description="Hard cap on the stream length; 0 = frames + fps * max_delay."
    )
    trust_event_time: bool = Field(
        default=False, description="Use the cashier system's event_time as the event's moment."
    )
    max_event_age: float = Field(
        default=1.0,
        ge=0,
        description="How old a trusted event_time may be; with trust_event_time the capture "
        "keeps this many seconds of frames beyond N.",
    )
    max_clock_skew: float = Field(
        default=2.0, ge=0, description="How far in the future a trusted event_time may be."
    )
    settle_timeout: float = Field(
        default=2.0, gt=0, description="Seconds a worker waits for frames up to the event's moment."
    )

    # Output.
    output_dir: Path = Field(default=Path("recordings"), description="Recordings root.")
    png_encoder: Literal["fpng", "cv2"] = Field(default="fpng", description="PNG encoder.")
    png_compression: int = Field(default=1, ge=0, le=9, description="cv2 PNG compression level.")
    recordings_group: str | None = Field(
        default=None,
        description="Group (name or ID) given the recordings; files are 0640, folders 0750.",
    )
    signing_key_dir: Path | None = Field(
        default=None,
        description="Folder of the box's Ed25519 signing key (made at the first worker "
        "start); default: <output_dir>/.keys.",
    )

    # Retention: what the prune deletes, oldest first; a recording on hold is never deleted.
    retention_days: float = Field(
        default=30.0, ge=0, description="Days a recording is kept; 0 = no age limit."
    )
    retention_max_bytes: int = Field(
        default=0, ge=0, description="Cap on the recordings' total bytes; 0 = no cap."
    )
    min_free_bytes: int = Field(
        default=1024**3, ge=0,
        description="Free bytes the recordings filesystem keeps: below it the oldest "
        "recordings go first, and events are refused once nothing is left to delete.",
    )  # fmt: skip
    camera_retention: dict[str, CameraRetention] = Field(
        default_factory=dict,
        description='Per-camera overrides, JSON: {"lane-2": {"days": 7, "max_bytes": 0}}.',
    )
    prune_interval: float = Field(
        default=30.0, gt=0, description="Seconds between prune passes (Celery beat)."
    )
    prune_batch: int = Field(
        default=200, ge=1, le=10_000, description="Recordings deleted per batch of a prune pass."
    )
    tombstone_days: float = Field(
        default=30.0, gt=0, description="Days a deleted recording still answers 410 Gone."
    )

    # API.
    host: str = Field(default="127.0.0.1", description="API bind address.")
    port: int = Field(default=8000, ge=0, le=65535, description="API port.")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest event body.")
    max_queued: int = Field(default=10_000, ge=1, description="Queued jobs before 503.")
    idempotency_ttl: int = Field(default=86_400, ge=1, description="Seconds a key is remembered.")
    api_key: SecretStr | None = Field(
        default=None,
        description="A key for every /v1 route (`Authorization: Bearer <key>`): ingest and read.",
    )
    ingest_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys that may only post events and read their status (the cashier "
        "system's), comma-separated: several, to rotate them.",
    )
    read_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys that may read recordings, frames and cameras and hold recordings "
        "(investigators, the page), comma-separated.",
    )
    allow_no_auth: bool = Field(
        default=False,
        description="Serve the API without any key beyond loopback (logged as a warning).",
    )
    metrics_public: bool = Field(
        default=True, description="Serve /metrics without the API key (false: it needs it too)."
    )
    stale_after: float = Field(default=5.0, gt=0, description="Frame age at which /readyz fails.")
    api_workers: int = Field(
        default=1, ge=1, le=32, description="API processes (uvicorn workers) on the one port."
    )

    # Worker.
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes.")
    worker_nice: int = Field(
        default=10, ge=0, le=19,
        description="Niceness of worker processes: the capture must never wait for an encoder.",
    )  # fmt: skip
    task_time_limit: int = Field(default=300, ge=10, description="Hard time limit of one job (s).")
    read_page_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1, description="Bytes per stream read (pages large reads)."
    )
    worker_heartbeat: float = Field(
        default=1.0, gt=0, le=60,
        description="Seconds between a worker's liveness writes (and its takeover checks).",
    )  # fmt: skip
    worker_lost_after: float = Field(
        default=5.0, gt=0,
        description="Seconds of silence after which a worker is presumed dead and its jobs "
        "are handed to another worker.",
    )  # fmt: skip
    max_deliveries: int = Field(
        default=3, ge=1, le=100,
        description="Deliveries of one job before it is failed (a job that kills its worker).",
    )  # fmt: skip
    pin_seconds: float = Field(
        default=0, ge=0,
        description="How long an event's frames stay pinned; 0 = max_delay + task_time_limit "
        "+ the takeover time, the least that outlives every redelivery.",
    )  # fmt: skip

    # MQTT ingest (sco-recorder mqtt).
    mqtt_url: str | None = Field(
        default=None, description="Broker, mqtt://host:1883 or mqtts://host:8883; unset = no MQTT."
    )
    mqtt_protocol: Literal["5", "3.1.1"] = Field(default="5", description="MQTT version.")
    mqtt_topic_prefix: str = Field(
        default="sco", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$", description="Topic root."
    )
    mqtt_client_id: str = Field(
        default="sco-recorder-ingest", min_length=1, max_length=64,
        description="Client ID; it names the persistent session.",
    )  # fmt: skip
    mqtt_username: str | None = Field(default=None, description="Broker user name.")
    mqtt_password: SecretStr | None = Field(default=None, description="Broker password.")
    mqtt_ca_file: Path | None = Field(default=None, description="CA bundle for TLS.")
    mqtt_cert_file: Path | None = Field(default=None, description="Client certificate for TLS.")
    mqtt_key_file: Path | None = Field(default=None, description="Client key for TLS.")
    mqtt_session_expiry: int = Field(
        default=86_400, ge=0, description="Seconds the broker keeps the session while we are away."
    )
    mqtt_dead_letter_topic: str = Field(
        default="sco/deadletter", min_length=1, description="Where malformed messages go."
    )

    # Completion webhooks.
    webhooks: list[Webhook] = Field(
        default_factory=list,
        description='URLs told of final recordings, JSON: [{"url": "https://…", "secret": '
        '"…"}] (or "secret_file"); the store file\'s [[webhooks]].',
    )
    public_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s/]+",
        description="The API's address as others reach it, for the links in webhooks; "
        "default: http://<host>:<port>.",
    )  # fmt: skip
    webhook_timeout: float = Field(
        default=10.0, gt=0, le=120, description="Seconds a webhook receiver has to answer."
    )
    webhook_backoff: float = Field(
        default=5.0, gt=0, description="Seconds before the first retry; doubled each time."
    )
    webhook_max_backoff: float = Field(
        default=3600.0, gt=0, description="Longest wait between two tries."
    )
    webhook_give_up_after: float = Field(
        default=86_400.0, gt=0,
        description="Seconds of failures after which a delivery is dead-lettered "
        "(`sco-recorder webhooks failed|replay`).",
    )  # fmt: skip
    webhook_interval: float = Field(
        default=1.0, gt=0, description="Seconds between looks for deliveries that are due."
    )

    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Prometheus port of capture and worker; 0 = off."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")

    @field_validator("cameras", mode="before")
    @classmethod
    def _split_cameras(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("camera_id")
    @classmethod
    def _check_camera_id(cls, value: str) -> str:
        if not _CAMERA_ID.match(value):
            raise ValueError(f"must match {CAMERA_ID_PATTERN}")
        return value

    @field_validator("camera_retention")
    @classmethod
    def _check_retention_cameras(
        cls, value: dict[str, CameraRetention]
    ) -> dict[str, CameraRetention]:
        for camera in value:
            if not _CAMERA_ID.match(camera):
                raise ValueError(f"{camera!r} must match {CAMERA_ID_PATTERN}")
        return value

    @field_validator("cameras", "lanes", "camera_sources")
    @classmethod
    def _check_ids(cls, value: Any) -> Any:
        for name in value:
            if not _CAMERA_ID.match(name):
                raise ValueError(f"{name!r} must match {CAMERA_ID_PATTERN}")
        return value

    @model_validator(mode="after")
    def _check_store(self) -> Settings:
        """Every lane's camera and every camera source is one the API accepts."""
        cameras = set(self.camera_ids)
        for lane, members in self.lanes.items():
            for camera in members:
                if camera not in cameras:
                    raise ValueError(f"lane {lane!r}: camera {camera!r} is not configured")
            if lane in cameras:
                raise ValueError(f"lane {lane!r} has the name of a camera; name it otherwise")
        for camera in self.camera_sources:
            if camera not in cameras:
                raise ValueError(f"camera {camera!r} has a source but is not in SCO_CAMERAS")
        return self

    @field_validator("ingest_keys", "read_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        """Keys separated by commas (a variable) or lines (a secret file)."""
        if isinstance(value, str):
            return [part for part in re.split(r"[,\s]+", value) if part]
        return value

    @field_validator("api_key", "mqtt_password", "config", "public_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty variable (compose's `${VAR:-}`) means unset, never an empty value."""
        return None if value == "" else value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^mqtts?://[^/:]+(:\d+)?/?$", value):
            raise ValueError("must look like mqtt://host:1883 or mqtts://host:8883")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @model_validator(mode="after")
    def _check_redelivery(self) -> Settings:
        """Refuse timings under which a live worker looks dead, or a pin dies before its job."""
        if self.worker_lost_after < 3 * self.worker_heartbeat:
            raise ValueError(
                "SCO_WORKER_LOST_AFTER must be at least 3 x SCO_WORKER_HEARTBEAT, or a live "
                "worker's jobs would be taken from it"
            )
        if self.pin_seconds and self.pin_seconds < self.least_pin_seconds:
            raise ValueError(
                f"SCO_PIN_SECONDS={self.pin_seconds:g} is shorter than SCO_MAX_DELAY + "
                "SCO_TASK_TIME_LIMIT + SCO_WORKER_LOST_AFTER + SCO_WORKER_HEARTBEAT "
                f"({self.least_pin_seconds:g} s): a job that starts late and whose worker "
                "dies would find its frames gone"
            )
        return self

    @property
    def takeover_seconds(self) -> float:
        """Longest time from a worker's death until its jobs are queued again."""
        return self.worker_lost_after + self.worker_heartbeat

    @property
    def least_pin_seconds(self) -> float:
        """A job may start max_delay late, run up to its time limit, then need a takeover."""
        return self.max_delay + self.task_time_limit + self.takeover_seconds

    @property
    def pin_ttl(self) -> float:
        """How long an event's frames stay pinned."""
        return self.pin_seconds or self.least_pin_seconds

    def retention_days_of(self, camera_id: str) -> float:
        """Days a camera's recordings are kept (0: no age limit)."""
        override = self.camera_retention.get(camera_id)
        return self.retention_days if override is None or override.days is None else override.days

    def retention_max_bytes_of(self, camera_id: str) -> int:
        """Cap on one camera's recordings (0: none beyond the total cap)."""
        override = self.camera_retention.get(camera_id)
        return 0 if override is None or override.max_bytes is None else override.max_bytes

    @property
    def has_keys(self) -> bool:
        """Whether any API key is configured."""
        return bool(self.api_key or self.ingest_keys or self.read_keys)

    @property
    def keys_dir(self) -> Path:
        """Where the signing key lives."""
        return self.signing_key_dir or self.output_dir / ".keys"

    def frames_of(self, camera_id: str) -> int:
        """N of one camera: its own, else SCO_FRAMES."""
        own = self.camera_sources.get(camera_id)
        return own.frames if own is not None and own.frames is not None else self.frames

    def for_camera(self, camera_id: str) -> Settings:
        """The settings one camera's capture runs with: its ID, source, N and fps."""
        own = self.camera_sources.get(camera_id)
        update: dict[str, Any] = {"camera_id": camera_id, "frames": self.frames_of(camera_id)}
        if own is not None:
            update["source"] = own.source
            if own.fps is not None:
                update["fps"] = own.fps
        return self.model_copy(update=update)

    @property
    def captured_cameras(self) -> list[str]:
        """The cameras `up` captures: every one with a source, else the one of SCO_SOURCE."""
        return list(self.camera_sources) or [self.camera_id]

    @property
    def camera_ids(self) -> list[str]:
        """Cameras the API accepts; the capture's own camera when none is listed."""
        return self.cameras or [self.camera_id]

    @property
    def frame_store_url(self) -> str:
        """URL of the Redis holding frames; fails clearly when nothing provided one."""
        if self.redis_url is None:
            raise SettingsError("SCO_REDIS_URL (or REDIS_URL) is not set")
        return self.redis_url

    @property
    def state_store_url(self) -> str:
        """URL of the Redis holding the Celery broker and recording state."""
        return self.broker_url or self.frame_store_url


LOOPBACK = ("127.", "::1", "localhost")


def is_loopback(host: str) -> bool:
    """Whether an API bound to `host` is reachable from this machine only."""
    return host.startswith(LOOPBACK) or host == "[::1]"


def secured(settings: Settings) -> tuple[Settings, str | None]:
    """Settings fit to listen with: an API bound beyond loopback with no key gets a fresh
    one (returned, to be printed once), unless SCO_ALLOW_NO_AUTH says to run it open."""
    if settings.has_keys or settings.allow_no_auth or is_loopback(settings.host):
        return settings, None
    key = secrets.token_urlsafe(24)
    return settings.model_copy(update={"api_key": SecretStr(key)}), key


def pasteable_url(settings: Settings) -> str:
    """The API's base URL as a user can paste it: 0.0.0.0 is where it listens, not an
    address to call."""
    host = "127.0.0.1" if settings.host in {"0.0.0.0", "::", "[::]"} else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from flags, the environment and the store file; an error names the
    setting, or the file, key and line it came from."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except StoreFileError as error:  # raised by StoreFileSource, reading the file
        raise SettingsError(str(error)) from None
    except ValidationError as error:
        # Read again only to say where a wrong value sits: the file was valid TOML just now.
        path = config_path(given)
        store = StoreFile.read(path, Settings) if path is not None else None
        raise SettingsError(describe_errors(error, _labeller(store, given))) from None


def _labeller(store: StoreFile | None, given: dict[str, Any]) -> Callable[[str], str]:
    """Names a field by the file line it came from, unless a flag or variable set it."""

    def label(name: str) -> str:
        field = name.partition(".")[0]
        from_file = (
            store is not None
            and field in store.values
            and field not in given
            and f"SCO_{field.upper()}" not in os.environ
        )
        if from_file:
            assert store is not None
            loc = tuple(int(part) if part.isdigit() else part for part in name.split("."))
            where = store.where(loc)
            if where is not None:
                return where
        return _as_setting(name)

    return label


def describe_errors(error: ValidationError, label: Callable[[str], str] = str) -> str:
    """pydantic's errors as one clause each, "<field>: <message>", joined by "; ". `label`
    names a field the way the reader knows it; a check across fields names no field."""
    clauses = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        name = ".".join(str(part) for part in item["loc"])
        clauses.append(f"{label(name)}: {message}" if name else message)
    return "; ".join(clauses)


def _as_setting(name: str) -> str:
    field, _, within = name.partition(".")
    return f"invalid setting {name} (SCO_{field.upper()}{' at ' + within if within else ''})"


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as SCO_* variables, so every child process reads the same configuration."""
    env: dict[str, str] = {}
    for name, field in type(settings).model_fields.items():
        value = _plain(getattr(settings, name))
        if value is None:
            continue
        if isinstance(value, list) and NoDecode in field.metadata:  # comma-separated
            text = ",".join(str(item) for item in value)
        elif isinstance(value, dict | list):
            text = json.dumps(value)
        else:
            text = str(value)
        env[f"SCO_{name.upper()}"] = text
    return env


def shown_settings(settings: Settings) -> dict[str, Any]:
    """The settings as `config check` prints them: secrets and URL passwords masked."""

    def masked(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: masked(item) for key, item in value.items()}
        if isinstance(value, list):
            return [masked(item) for item in value]
        return mask_credentials(value) if isinstance(value, str) else value

    return dict(masked(settings.model_dump(mode="json")))


def _plain(value: Any) -> Any:
    """A setting's value as JSON would have it, secrets revealed (for a child's environment)."""
    if isinstance(value, BaseModel):
        return {
            name: _plain(getattr(value, name))
            for name, field in type(value).model_fields.items()
            if not field.exclude
        }
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value
