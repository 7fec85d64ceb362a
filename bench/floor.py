"""The floor every recorder pays: read the newest frames, encode PNG, write and fsync each."""

from __future__ import annotations

from datetime import datetime

from services.kernel.contracts import to_us
from services.stores.framebuffer import FrameBuffer
from services.stores.storage import Storage
from services.worker.encoder import Encoder

FRAMES = 30


def record_newest(
    buffer: FrameBuffer, storage: Storage, encode: Encoder, name: str, page_bytes: int,
    *, count: int = FRAMES,
) -> None:  # fmt: skip
    """One floor recording of the newest `count` frames, in a staging folder removed after."""
    window = buffer.window(to_us(datetime.now().astimezone()), count, 0)
    with storage.staging(name) as staged:
        frames = buffer.read(window.ids[0], window.ids[-1], page_bytes)
        for number, frame in enumerate(frames):
            staged.write(f"frame_{number:04d}.png", encode(frame.picture()))
