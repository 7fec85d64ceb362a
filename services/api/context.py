"""What the routes need, built once per app from the settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

from services.api.gauges import StoreGauges
from services.ingest.events import Ingest, make_ingest
from services.kernel.settings import Settings
from services.stores.cameras import CameraRegistry
from services.stores.framebuffer import FrameBuffer
from services.stores.recordings import RecordingStore

TIMEOUT = 2.0  # seconds to connect to or hear from a store before answering 503


@dataclass
class Metrics:
    """The API's own Prometheus metrics, in a registry of its own.

    `serving` is what /metrics exposes: the same registry, or with several API processes
    (multiprocess mode) every process's samples added up, plus the same store gauges.
    """

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    serving: CollectorRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.serving = self.registry
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            self.serving = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.serving)  # type: ignore[no-untyped-call]  # unannotated
        self.accepted = Counter(
            "sco_events_accepted", "Events answered 202.", ["camera_id"], registry=self.registry
        )
        self.duplicates = Counter(
            "sco_events_duplicate", "Events recognised as repeats.", registry=self.registry
        )
        self.accept_seconds = Histogram(
            "sco_event_accept_seconds", "Time to accept an event.", registry=self.registry
        )


@dataclass
class Context:
    """Clients and stores shared by the routes."""

    settings: Settings
    frames: redis.Redis
    state_store: redis.Redis
    store: RecordingStore
    cameras: CameraRegistry
    buffers: dict[str, FrameBuffer]
    ingest: Ingest
    metrics: Metrics

    @classmethod
    def build(cls, settings: Settings) -> Context:
        """Connect to the frame store and the state store named by the settings."""
        options = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}
        frames = redis.Redis.from_url(settings.frame_store_url, **options)
        state_store = redis.Redis.from_url(settings.state_store_url, **options)
        buffers = {camera: FrameBuffer(frames, camera) for camera in settings.camera_ids}
        metrics = Metrics()
        metrics.serving.register(StoreGauges(frames, state_store, buffers))
        return cls(
            settings=settings,
            frames=frames,
            state_store=state_store,
            store=RecordingStore(state_store),
            cameras=CameraRegistry(frames),
            buffers=buffers,
            ingest=make_ingest(settings, timeout=TIMEOUT),
            metrics=metrics,
        )

    async def close(self) -> None:
        """Release connections."""
        self.frames.close()
        self.state_store.close()
        await self.ingest.close()
