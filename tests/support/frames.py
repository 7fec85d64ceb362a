"""Checks shared by the end-to-end tests: the saved frames are the right ones."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from tests.support.observer import StreamObserver
from tests.support.videos import read_index


def load_manifest(recording: dict[str, object]) -> dict[str, object]:
    """metadata.json of a final recording, with its folder as `path`."""
    path = Path(str(recording["path"]))
    manifest: dict[str, object] = json.loads((path / "metadata.json").read_text())
    manifest["path"] = str(path)
    return manifest


def assert_right_frames(manifest: dict[str, object], observer: StreamObserver) -> None:
    """The saved frames are exactly the N captured at or before the moment (then the
    frames_after captured after it), consecutive and losslessly."""
    moment_us = datetime.fromisoformat(str(manifest["event_time"])).timestamp() * 1e6
    frames = manifest["frames"]
    assert isinstance(frames, list)
    before = int(str(manifest.get("frames_before", len(frames))))
    saved_ids = [frame["stream_id"] for frame in frames]
    observer.wait_for(len(observer.frames) + 1)  # the frame after the window, too
    seen = [frame.stream_id for frame in observer.frames]
    last = seen.index(saved_ids[-1])
    assert saved_ids == seen[last - len(saved_ids) + 1 : last + 1], "not consecutive"
    by_id = observer.by_id()
    after_window = seen[seen.index(saved_ids[before - 1]) + 1]
    assert by_id[after_window].captured_us > moment_us, "a newer frame before the moment"
    path = Path(str(manifest["path"]))
    for number, record in enumerate(frames):
        raw = by_id[record["stream_id"]]
        if number < before:
            assert raw.captured_us <= moment_us + 1, "a frame from after the moment"
        else:
            assert raw.captured_us > moment_us, "a frame from before the moment, after it"
        png_bytes = (path / record["file"]).read_bytes()
        assert hashlib.sha256(png_bytes).hexdigest() == record["sha256"]
        decoded = cv2.imread(str(path / record["file"]), cv2.IMREAD_UNCHANGED)
        assert decoded is not None
        assert np.array_equal(decoded, raw.picture()), "PNG differs from the raw frame"
        assert read_index(decoded) == record["source_index"] == raw.source_index
