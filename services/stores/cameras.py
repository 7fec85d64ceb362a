"""Camera heartbeats: the capture publishes its status, the API reads it."""

from __future__ import annotations

from typing import cast

import redis
from redis import asyncio as aioredis

from services.kernel import keys
from services.kernel.contracts import CameraStatus


def _parsed(raw: bytes | str | None) -> CameraStatus | None:
    return CameraStatus.model_validate_json(raw) if raw else None


class CameraRegistry:
    """Latest status per camera in the frame store, kept after the capture stops."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def publish(self, status: CameraStatus) -> None:
        """Store the capture's current status."""
        self._redis.set(keys.camera_status(status.camera_id), status.model_dump_json())

    def read(self, camera_id: str) -> CameraStatus | None:
        """The last status a capture published for this camera, if any."""
        return _parsed(cast("bytes | None", self._redis.get(keys.camera_status(camera_id))))


class AsyncCameraRegistry:
    """The same statuses, read on the API's asyncio client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def read(self, camera_id: str) -> CameraStatus | None:
        """The last status a capture published for this camera, if any."""
        return _parsed(await self._redis.get(keys.camera_status(camera_id)))
