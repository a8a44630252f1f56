"""What a detector reports, before it becomes a `Recommendation` event."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from revopipe.events import Recommendation

Priority = Literal["high", "medium", "low"]
Risk = Literal["low", "medium", "high"]
PRIORITY_ORDER: Mapping[str, int] = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    key: str
    """Detector and subject, e.g. 'changepoint:http.server.request.duration.p95{...}@t':
    the same key on the next evaluation is the same finding, not a new one."""
    detector: str
    title: str
    action: str
    priority: Priority
    risk: Risk
    """Risk of doing what `action` says."""
    evidence: Mapping[str, str] = field(default_factory=dict)
    confidence: float | None = None
    """1 - p-value of the test behind the finding, when there is one."""

    def recommendation(self, timestamp_ns: int) -> Recommendation:
        evidence = {"detector": self.detector, **self.evidence}
        if self.confidence is not None:
            evidence["confidence"] = f"{self.confidence:.4f}"
        return Recommendation(
            title=self.title,
            action=self.action,
            priority=self.priority,
            risk=self.risk,
            evidence=tuple(evidence.items()),
            timestamp=timestamp_ns,
            key=self.key,
        )


def priority_for(size: float, high: float, medium: float) -> Priority:
    """'high' at or above `high`, 'medium' at or above `medium`, else 'low'."""
    if size >= high:
        return "high"
    if size >= medium:
        return "medium"
    return "low"


def when(t: float) -> str:
    """Wall-clock seconds as an ISO 8601 UTC time, to the second."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration_text(seconds: float) -> str:
    """'45 s', '12 min', '6.5 h', '3.0 d'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def fmt(value: float) -> str:
    """A figure with 4 significant digits."""
    return f"{value:.4g}"
