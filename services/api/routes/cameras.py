"""GET /v1/cameras: what each capture last reported, and its buffer."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.context import Context
from services.api.deps import READ, ContextDep
from services.kernel.contracts import utcnow

router = APIRouter(prefix="/v1", tags=["cameras"], dependencies=[READ])


class CameraView(BaseModel):
    """One camera as the API shows it."""

    camera_id: str
    state: str
    source: str | None = None
    fps: float = 0.0
    width: int = 0
    height: int = 0
    last_frame_age_s: float | None = None
    buffer_length: int = 0
    buffer_cap: int = 0
    frames_read: int = 0
    late_frames: int = 0
    dropped_frames: int = 0
    last_error: str | None = None


async def describe_camera(context: Context, camera_id: str) -> CameraView:
    """The camera's last heartbeat plus its live buffer length."""
    status = await context.cameras.read(camera_id)
    length = await context.pins[camera_id].length()
    if status is None:
        return CameraView(camera_id=camera_id, state="unknown", buffer_length=length)
    age = (utcnow() - status.last_frame_at).total_seconds() if status.last_frame_at else None
    return CameraView(
        camera_id=camera_id,
        state=status.state,
        source=status.source,
        fps=status.fps,
        width=status.width,
        height=status.height,
        last_frame_age_s=round(age, 3) if age is not None else None,
        buffer_length=length,
        buffer_cap=status.buffer_cap,
        frames_read=status.frames_read,
        late_frames=status.late_frames,
        dropped_frames=status.dropped_frames,
        last_error=status.last_error,
    )


@router.get("/cameras")
async def list_cameras(context: ContextDep) -> list[CameraView]:
    """Every configured camera: fps, resolution, last frame age, buffer length."""
    return [await describe_camera(context, camera) for camera in context.settings.camera_ids]
