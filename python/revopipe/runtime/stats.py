"""Per-component counters and health, read by the `internal` source and `revopipe top`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from revopipe.events import HealthStatus


@dataclass(slots=True)
class ComponentStats:
    """Counters of one component. Plain ints: the runtime runs in one event loop thread,
    so increments need no lock."""

    name: str
    kind: str
    type: str
    events_in: int = 0
    events_out: int = 0
    batches_in: int = 0
    batches_out: int = 0
    dropped: int = 0
    errors: int = 0
    retries: int = 0
    restarts: int = 0
    dead_lettered: int = 0
    busy_seconds: float = 0.0
    max_batch_seconds: float = 0.0
    health: HealthStatus = HealthStatus.HEALTHY
    reason: str = ""
    last_error: str = ""
    started_at: float = field(default_factory=time.time)

    def record_latency(self, seconds: float) -> None:
        self.busy_seconds += seconds
        if seconds > self.max_batch_seconds:
            self.max_batch_seconds = seconds

    def set_health(self, status: HealthStatus, reason: str = "") -> None:
        self.health = status
        self.reason = reason

    COUNTERS = (
        "events_in",
        "events_out",
        "batches_in",
        "batches_out",
        "dropped",
        "errors",
        "retries",
        "restarts",
        "dead_lettered",
    )

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            **{k: getattr(self, k) for k in self.COUNTERS},
            "busy_seconds": self.busy_seconds,
            "max_batch_seconds": self.max_batch_seconds,
            "health": str(self.health),
            "reason": self.reason,
            "last_error": self.last_error,
        }
