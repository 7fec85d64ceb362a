"""Gauges read from Redis at scrape time: buffers, pins, queue, memory, retention, webhooks."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import cast

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import asyncio as aioredis

from services.kernel import keys
from services.stores.framebuffer import FramePins
from services.stores.retention import AsyncRetentionStore
from services.stores.webhooks import counts_of

log = logging.getLogger(__name__)


class StoreGauges(Collector):
    """Stream length, live pins and Redis memory per camera; queue depth.

    Prometheus collects synchronously; the stores are read on the API's asyncio clients. So
    the /metrics route awaits `refresh()` first and `collect()` reports what it read.
    """

    def __init__(
        self,
        frames: aioredis.Redis,
        state_store: aioredis.Redis,
        pins: dict[str, FramePins],
        retention: AsyncRetentionStore,
    ) -> None:
        self.frames = frames
        self.state_store = state_store
        self.pins = pins
        self.retention = retention
        self._families: list[Metric] = []

    async def refresh(self) -> None:
        """Read every gauge now; none when a store does not answer."""
        try:
            self._families = await self._read()
        except redis.RedisError as error:
            log.debug("store gauges not read: %s", error)
            self._families = []

    def collect(self) -> Iterator[Metric]:
        """What the last refresh read."""
        yield from self._families

    async def _read(self) -> list[Metric]:
        length = GaugeMetricFamily(
            "sco_stream_length", "Frames in the camera's stream.", labels=["camera_id"]
        )
        pins = GaugeMetricFamily("sco_live_pins", "Windows pinned for jobs.", labels=["camera_id"])
        for camera, camera_pins in self.pins.items():
            length.add_metric([camera], await camera_pins.length())
            pins.add_metric([camera], await camera_pins.live_pins())
        queued = GaugeMetricFamily("sco_queue_depth", "Jobs waiting in the broker.")
        queued.add_metric([], int(await self.state_store.llen(keys.RECORD_QUEUE)))
        memory = GaugeMetricFamily(
            "sco_redis_used_memory_bytes", "Redis used_memory.", labels=["store"]
        )
        filled = GaugeMetricFamily(
            "sco_redis_memory_fill_ratio",
            "used_memory / maxmemory (0 without a maxmemory); alert well before 1, where the "
            "state store refuses writes.",
            labels=["store"],
        )
        for name, client in (("frames", self.frames), ("state", self.state_store)):
            info = cast("dict[str, int]", await client.info("memory"))
            memory.add_metric([name], info["used_memory"])
            most = int(info.get("maxmemory", 0))
            filled.add_metric([name], info["used_memory"] / most if most else 0.0)
        return [length, pins, queued, memory, filled, *await self._retention(),
                *await self._webhooks()]  # fmt: skip

    async def _webhooks(self) -> list[Metric]:
        """Deliveries by webhook and outcome (delivered, retried, failed), pending, dead."""
        delivered = CounterMetricFamily(
            "sco_webhook_deliveries",
            "Webhook tries by outcome: delivered, retried (a failure to retry), failed "
            "(given up on: a dead letter).",
            labels=["webhook", "outcome"],
        )
        counts = counts_of(await self.state_store.hgetall(keys.WEBHOOK_COUNTS))
        for (hook, outcome), total in counts.items():
            delivered.add_metric([hook, outcome], total)
        pending = GaugeMetricFamily("sco_webhook_pending", "Deliveries waiting to be sent.")
        pending.add_metric([], int(await self.state_store.zcard(keys.WEBHOOK_DUE)))
        dead = GaugeMetricFamily(
            "sco_webhook_dead_letters", "Deliveries given up on (sco-recorder webhooks failed)."
        )
        dead.add_metric([], int(await self.state_store.hlen(keys.WEBHOOK_FAILED)))
        return [delivered, pending, dead]

    async def _retention(self) -> list[Metric]:
        """Disk, recordings and holds per camera, deletions per camera and rule."""
        disk = await self.retention.disk()
        free = GaugeMetricFamily(
            "sco_recordings_free_bytes", "Free bytes of the recordings filesystem (last prune)."
        )
        full = GaugeMetricFamily(
            "sco_recordings_disk_full",
            "1 while events are refused: under SCO_MIN_FREE_BYTES, nothing left to delete.",
        )
        if disk is not None:
            free.add_metric([], disk.free_bytes)
            full.add_metric([], int(disk.full))
        size, count, age, held = (
            GaugeMetricFamily(name, text, labels=["camera_id"])
            for name, text in (
                ("sco_recordings_bytes", "Bytes of the camera's recordings on disk."),
                ("sco_recordings_count", "Recordings of the camera kept."),
                ("sco_recordings_oldest_age_seconds", "Age of the camera's oldest recording."),
                ("sco_recordings_held", "Recordings of the camera on hold."),
            )
        )
        now_ms = time.time() * 1000
        for camera, usage in (await self.retention.usage()).items():
            size.add_metric([camera], usage.size)
            count.add_metric([camera], usage.count)
            held.add_metric([camera], usage.held)
            if usage.oldest_ms is not None:
                age.add_metric([camera], max(0.0, (now_ms - usage.oldest_ms) / 1000))
        deleted = CounterMetricFamily(
            "sco_retention_deletions",
            "Recordings deleted by retention, by camera and rule.",
            labels=["camera_id", "rule"],
        )
        for (camera, rule), total in (await self.retention.deletions()).items():
            deleted.add_metric([camera, rule], total)
        return [free, full, size, count, age, held, deleted]
