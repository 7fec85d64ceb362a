"""The worker's Prometheus metrics; with several pool processes, in multiprocess mode.

`sco-recorder worker` sets PROMETHEUS_MULTIPROC_DIR before this module is imported when
SCO_METRICS_PORT is set, so every pool process writes its samples where the main process's
metrics server adds them up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


@dataclass
class WorkerMetrics:
    """Recordings by final status, job duration, frames written, and event-to-recording
    latency."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.recordings = Counter(
            "sco_recordings", "Recordings by final status.", ["status"], registry=self.registry
        )
        self.job_seconds = Histogram(
            "sco_job_seconds",
            "From the job's start to its final status.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.frames = Counter(
            "sco_frames_written",
            "Frames written: encoded by the job, or shared from a job whose window overlapped.",
            ["how"],
            registry=self.registry,
        )
        self.event_to_final_seconds = Histogram(
            "sco_event_to_final_seconds",
            "From the event's receipt to its recording's final status.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


def serving_registry() -> CollectorRegistry:
    """What the metrics server exposes: every pool process's samples when in multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return CollectorRegistry()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated
    return registry
