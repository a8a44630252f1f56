"""Event values that flow through a pipeline.

Events are immutable. Names and units follow OpenTelemetry semantic conventions
(`system.cpu.utilization`, `http.server.request.duration` in seconds); exporters
translate them to their own conventions.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

Tags = tuple[tuple[str, str], ...]
"""Tags as sorted (key, value) pairs: hashable, and a series key is (name, tags)."""


def now_ns() -> int:
    """Wall-clock time in nanoseconds, the timestamp unit of every event."""
    return time.time_ns()


def make_tags(tags: Mapping[str, object] | Iterable[tuple[str, object]] | None) -> Tags:
    """Normalise a mapping or pairs into sorted string pairs."""
    if not tags:
        return ()
    items = tags.items() if isinstance(tags, Mapping) else tags
    return tuple(sorted((str(k), str(v)) for k, v in items))


class MetricKind(enum.IntEnum):
    """How a metric's values combine; the integer is the wire code shared with Rust."""

    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2
    SET = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> MetricKind:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(
                f"unknown metric kind {text!r}; expected one of " + ", ".join(k.label for k in cls)
            ) from None


@dataclass(frozen=True, slots=True)
class Metric:
    """One measurement. A counter's value is the cumulative or delta count as the
    source documents; a histogram's value is one observation."""

    type: ClassVar[str] = "metric"
    name: str
    value: float
    kind: MetricKind = MetricKind.GAUGE
    unit: str = "1"
    timestamp: int = field(default_factory=now_ns)
    tags: Tags = ()

    @property
    def tag_dict(self) -> dict[str, str]:
        return dict(self.tags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "kind": self.kind.label,
            "value": self.value,
            "unit": self.unit,
            "timestamp": self.timestamp,
            "tags": dict(self.tags),
        }


@dataclass(frozen=True, slots=True)
class Span:
    """A finished unit of work in a trace (W3C trace context ids, hex encoded)."""

    type: ClassVar[str] = "span"
    name: str
    trace_id: str
    span_id: str
    start_ns: int
    end_ns: int
    parent_span_id: str | None = None
    status: str = "ok"
    attributes: Tags = ()

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attributes"] = dict(self.attributes)
        return {"type": self.type, **d}


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    """A state change of an alert rule's instance."""

    type: ClassVar[str] = "alert"
    rule: str
    state: str
    severity: Severity
    summary: str
    labels: Tags = ()
    value: float | None = None
    timestamp: int = field(default_factory=now_ns)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = dict(self.labels)
        d["severity"] = str(self.severity)
        return {"type": self.type, **d}


@dataclass(frozen=True, slots=True)
class Recommendation:
    """An evidenced suggestion produced by the optimizer. `key` identifies what it is about
    (detector and series), so a repeat of the same finding can be recognised; `evidence`
    holds the figures behind it (series, values, change point, confidence)."""

    type: ClassVar[str] = "recommendation"
    title: str
    action: str
    priority: str
    risk: str
    evidence: tuple[tuple[str, str], ...] = ()
    timestamp: int = field(default_factory=now_ns)
    key: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = dict(self.evidence)
        return {"type": self.type, **d}


@dataclass(frozen=True, slots=True)
class Profile:
    """Collapsed stacks sampled over a window: each stack is `frame;frame;frame`."""

    type: ClassVar[str] = "profile"
    start_ns: int
    end_ns: int
    samples: tuple[tuple[str, int], ...]
    tags: Tags = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "samples": dict(self.samples),
            "tags": dict(self.tags),
        }


@dataclass(frozen=True, slots=True)
class LoadTestSample:
    """One second of a load test's results."""

    type: ClassVar[str] = "loadtest_sample"
    test: str
    timestamp: int
    requests: int
    errors: int
    latency_p50_s: float
    latency_p99_s: float
    users: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True, slots=True)
class Exemplar:
    """One observation of a histogram tied to the trace that produced it, so a slow bucket
    in Prometheus or the dashboard links to the request behind it (OpenMetrics exemplars)."""

    value: float
    trace_id: str
    span_id: str
    timestamp_ns: int


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """One window of a histogram series, mergeable: `hdr` is the standard compressed
    HdrHistogram V2 encoding (base64) of values recorded as round(value / resolution).
    count, sum, min and max are exact. Agents ship these so an aggregator computes exact
    global percentiles instead of averaging percentiles."""

    type: ClassVar[str] = "histogram_snapshot"
    name: str
    unit: str
    start_ns: int
    end_ns: int
    count: int
    sum: float
    min: float
    max: float
    hdr: str
    resolution: float
    tags: Tags = ()
    exemplars: tuple[Exemplar, ...] = ()
    """A few observations with their trace ids (at most one per power-of-two range of
    values, the latest of each), when the service recorded them with a span."""

    @classmethod
    def from_core(cls, r: Mapping[str, Any], start_ns: int, end_ns: int) -> HistogramSnapshot:
        """From a Rust core result (an instrument reading or an aggregator window), which
        carries name, unit, tags, count, sum, min, max, hdr and resolution."""
        return cls(
            name=r["name"],
            unit=r["unit"],
            start_ns=start_ns,
            end_ns=end_ns,
            count=r["count"],
            sum=r["sum"],
            min=r["min"],
            max=r["max"],
            hdr=r["hdr"],
            resolution=r["resolution"],
            tags=r["tags"],
            exemplars=tuple(Exemplar(*e) for e in r.get("exemplars", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tags"] = dict(self.tags)
        return {"type": self.type, **d}


class HealthStatus(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class Health:
    """The health of a component or of a monitored service, with the reason."""

    type: ClassVar[str] = "health"
    subject: str
    status: HealthStatus
    reason: str = ""
    timestamp: int = field(default_factory=now_ns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "subject": self.subject,
            "status": str(self.status),
            "reason": self.reason,
            "timestamp": self.timestamp,
        }


Event = (
    Metric | Span | Alert | Recommendation | Profile | LoadTestSample | Health | HistogramSnapshot
)
"""Every event type a batch may carry besides its columnar metrics."""
