"""Gauges read from Redis at scrape time: buffers, pins, queue, memory."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import cast

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import asyncio as aioredis

from services.kernel import keys
from services.stores.framebuffer import FramePins

log = logging.getLogger(__name__)


class StoreGauges(Collector):
    """Stream length, live pins and Redis memory per camera; queue depth.

    Prometheus collects synchronously; the stores are read on the API's asyncio clients. So
    the /metrics route awaits `refresh()` first and `collect()` reports what it read.
    """

    def __init__(
        self, frames: aioredis.Redis, state_store: aioredis.Redis, pins: dict[str, FramePins]
    ) -> None:
        self.frames = frames
        self.state_store = state_store
        self.pins = pins
        self._families: list[GaugeMetricFamily] = []

    async def refresh(self) -> None:
        """Read every gauge now; none when a store does not answer."""
        try:
            self._families = await self._read()
        except redis.RedisError as error:
            log.debug("store gauges not read: %s", error)
            self._families = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """What the last refresh read."""
        yield from self._families

    async def _read(self) -> list[GaugeMetricFamily]:
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
        for name, client in (("frames", self.frames), ("state", self.state_store)):
            info = cast("dict[str, int]", await client.info("memory"))
            memory.add_metric([name], info["used_memory"])
        return [length, pins, queued, memory]
