"""What the routes need, built once per app from the settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from redis import asyncio as aioredis

from services.api.gauges import StoreGauges
from services.ingest.events import Ingest, make_ingest, store_clients
from services.kernel.settings import Settings
from services.stores.cameras import AsyncCameraRegistry
from services.stores.framebuffer import FramePins
from services.stores.recordings import AsyncRecordingStore
from services.stores.retention import AsyncRetentionStore
from services.stores.storage import Storage

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
    """Clients and stores shared by the routes: one asyncio client per store, shared with the
    ingest, so an API process holds two connection pools."""

    settings: Settings
    frames: aioredis.Redis
    state_store: aioredis.Redis
    store: AsyncRecordingStore
    retention: AsyncRetentionStore
    storage: Storage
    cameras: AsyncCameraRegistry
    pins: dict[str, FramePins]
    gauges: StoreGauges
    ingest: Ingest
    metrics: Metrics
    keys: list[tuple[bytes, frozenset[str]]] = field(default_factory=list)  # see deps.key_scopes

    @classmethod
    def build(cls, settings: Settings) -> Context:
        """Connect to the frame store and the state store named by the settings."""
        frames, state_store = store_clients(settings, TIMEOUT)
        ingest = make_ingest(settings, frames, state_store, owns=False)
        metrics = Metrics()
        retention = AsyncRetentionStore(state_store)
        gauges = StoreGauges(frames, state_store, ingest.pins, retention)
        metrics.serving.register(gauges)
        return cls(
            settings=settings,
            frames=frames,
            state_store=state_store,
            store=AsyncRecordingStore(state_store),
            retention=retention,
            storage=Storage(settings.output_dir.resolve()),
            cameras=AsyncCameraRegistry(frames),
            pins=ingest.pins,
            gauges=gauges,
            ingest=ingest,
            metrics=metrics,
        )

    async def close(self) -> None:
        """Release connections."""
        await self.frames.aclose()
        await self.state_store.aclose()
