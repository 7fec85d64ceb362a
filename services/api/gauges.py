"""Gauges read from Redis at scrape time: buffers, pins, queue, memory."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import cast

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.kernel import keys
from services.stores.framebuffer import FrameBuffer

log = logging.getLogger(__name__)


class StoreGauges(Collector):
    """Stream length, live pins and Redis memory per camera; queue depth; read on each scrape."""

    def __init__(
        self, frames: redis.Redis, state_store: redis.Redis, buffers: dict[str, FrameBuffer]
    ) -> None:
        self.frames = frames
        self.state_store = state_store
        self.buffers = buffers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample per camera and store; nothing when a store does not answer."""
        try:
            yield from self._collect()
        except redis.RedisError as error:
            log.debug("store gauges not collected: %s", error)

    def _collect(self) -> Iterator[GaugeMetricFamily]:
        length = GaugeMetricFamily(
            "sco_stream_length", "Frames in the camera's stream.", labels=["camera_id"]
        )
        pins = GaugeMetricFamily("sco_live_pins", "Windows pinned for jobs.", labels=["camera_id"])
        for camera, buffer in self.buffers.items():
            length.add_metric([camera], buffer.length())
            pins.add_metric([camera], int(self.frames.zcard(keys.pins(camera))))
        yield length
        yield pins
        queued = GaugeMetricFamily("sco_queue_depth", "Jobs waiting in the broker.")
        queued.add_metric([], int(self.state_store.llen(keys.RECORD_QUEUE)))
        yield queued
        memory = GaugeMetricFamily(
            "sco_redis_used_memory_bytes", "Redis used_memory.", labels=["store"]
        )
        for name, client in (("frames", self.frames), ("state", self.state_store)):
            info = cast("dict[str, int]", client.info("memory"))
            memory.add_metric([name], info["used_memory"])
        yield memory
