"""The capture's Prometheus metrics, in a registry of its own, served on SCO_METRICS_PORT."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LAG_BUCKETS = (0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
XADD_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class CaptureMetrics:
    """Frames read, late and dropped, the rate, and how long each append took."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        labels = ["camera_id"]
        self.frames = Counter(
            "sco_capture_frames", "Frames read from the source.", labels, registry=self.registry
        )
        self.late = Counter(
            "sco_capture_late_frames",
            "Frames emitted more than one frame period after their due time.",
            labels,
            registry=self.registry,
        )
        self.dropped = Counter(
            "sco_capture_dropped_frames",
            "Frames the frame store did not take.",
            labels,
            registry=self.registry,
        )
        self.fps = Gauge(
            "sco_capture_fps", "Frames per second over 2 s.", labels, registry=self.registry
        )
        self.lag = Histogram(
            "sco_capture_lag_seconds",
            "How long after the camera saw a frame it was pushed (its stamp is when it was "
            "seen: a file's due time, a live stream's position).",
            labels,
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.append_seconds = Histogram(
            "sco_capture_append_seconds",
            "XADD + index + trim of one frame, one round trip.",
            labels,
            buckets=XADD_BUCKETS,
            registry=self.registry,
        )

    def of(self, camera_id: str) -> CameraMetrics:
        """One camera's series, looked up once rather than per frame."""
        return CameraMetrics(
            frames=self.frames.labels(camera_id),
            late=self.late.labels(camera_id),
            dropped=self.dropped.labels(camera_id),
            fps=self.fps.labels(camera_id),
            append_seconds=self.append_seconds.labels(camera_id),
            lag=self.lag.labels(camera_id),
        )


@dataclass(frozen=True)
class CameraMetrics:
    """The series of one camera."""

    frames: Counter
    late: Counter
    dropped: Counter
    fps: Gauge
    append_seconds: Histogram
    lag: Histogram
