"""The health model: every component and every monitored service has a status (healthy,
degraded, unhealthy) with a reason, and the pipeline's overall status aggregates them by
one documented rule. The control API (`/api/v1/health`, `/readyz`) and the dashboard read
the same answer through `Pipeline.health()`.

Subjects:

- a **component** (`component:<name>`): its `ComponentStats.health`, set by the
  supervisor (unhealthy when it raised, degraded after a recovery, healthy again after a
  clean spell). Every component is *required*.
- a **service** (`service:<name>`): a monitored thing whose health a component derives
  from the stream, e.g. the `health` processor. A service is required unless its rule says
  `required = false`.

The aggregation rule (`overall`):

1. **unhealthy** if any *required* subject is unhealthy;
2. otherwise **degraded** if any subject is degraded, or any *non-required* subject is
   unhealthy (an optional dependency that is down degrades, it does not fail, the whole);
3. otherwise **healthy** (also when there are no subjects at all).

The reason names the subjects that decided the status, worst first, each with its own
reason: `"service:api: value(up) == 0 holds ...; component:out: write raised ..."`, at
most `MAX_NAMED` of them, then "and N more".

Reporting services (the core hook): a component instance that has a
`health_entries() -> Iterable[HealthEntry]` method (the `HealthReporter` protocol) has
those entries included, each with `kind="service"`. The runtime asks the live instance on
every read, so nothing is registered and nothing is left behind when the component stops;
while the component restarts its services are absent, and the component itself reads as
unhealthy, so the overall status is unhealthy meanwhile anyway. `health_entries` runs on
the pipeline's event loop between two awaits of the component: return a snapshot, do not
block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from revopipe.events import Health, HealthStatus
from revopipe.runtime.stats import ComponentStats

if TYPE_CHECKING:
    from revopipe.runtime.pipeline import Pipeline

SubjectKind = Literal["component", "service"]

SEVERITY: dict[HealthStatus, int] = {
    HealthStatus.HEALTHY: 0,
    HealthStatus.DEGRADED: 1,
    HealthStatus.UNHEALTHY: 2,
}
"""Order of the statuses, worst highest."""

HEALTH_VALUE: dict[HealthStatus, float] = {
    HealthStatus.HEALTHY: 1.0,
    HealthStatus.DEGRADED: 0.5,
    HealthStatus.UNHEALTHY: 0.0,
}
"""The number a health gauge carries (`revopipe.component.health`, `revopipe.service.health`)."""

MAX_NAMED = 5
"""Subjects an overall reason names before "and N more"."""


@dataclass(frozen=True, slots=True)
class HealthEntry:
    """The health of one subject. `subject` is `component:<name>` or `service:<name>`, as
    in `revopipe.events.Health`; `since` is the wall-clock time (Unix seconds) the subject
    entered this status, when known."""

    subject: str
    kind: SubjectKind
    status: HealthStatus
    reason: str = ""
    since: float | None = None
    required: bool = True

    @property
    def name(self) -> str:
        """The subject without its `component:`/`service:` prefix."""
        return self.subject.partition(":")[2] or self.subject

    @classmethod
    def from_event(cls, event: Health, required: bool = True) -> HealthEntry:
        """The entry a `Health` event reports (e.g. for a sink that follows the stream);
        the event does not say whether a service is required, so the caller does."""
        kind: SubjectKind = "component" if event.subject.startswith("component:") else "service"
        return cls(event.subject, kind, event.status, event.reason, event.timestamp / 1e9, required)

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "kind": self.kind,
            "status": str(self.status),
            "reason": self.reason,
            "since": self.since,
            "required": self.required,
        }


@dataclass(frozen=True, slots=True)
class Overall:
    """The aggregate status, its reason, and the subjects that decided it (worst first)."""

    status: HealthStatus
    reason: str = ""
    culprits: tuple[str, ...] = ()


@runtime_checkable
class HealthReporter(Protocol):
    """A component that reports the health of services it watches (see the module doc)."""

    def health_entries(self) -> Iterable[HealthEntry]: ...


def effective(entry: HealthEntry) -> HealthStatus:
    """What one subject contributes to the overall status: a non-required unhealthy
    subject counts as degraded."""
    if entry.status is HealthStatus.UNHEALTHY and not entry.required:
        return HealthStatus.DEGRADED
    return entry.status


def overall(entries: Iterable[HealthEntry]) -> Overall:
    """The pipeline's status by the rule in the module doc."""
    items = list(entries)
    status = max((effective(e) for e in items), key=SEVERITY.__getitem__, default=None)
    if status is None or status is HealthStatus.HEALTHY:
        return Overall(HealthStatus.HEALTHY)
    # Those that decided the status, the actually-unhealthy optional ones before the
    # merely degraded when the result is "degraded": they are the more urgent to read.
    deciding = [e for e in items if effective(e) is status]
    deciding.sort(key=lambda e: -SEVERITY[e.status])  # stable: input order otherwise
    named = deciding[:MAX_NAMED]
    parts = [f"{e.subject}: {e.reason}" if e.reason else f"{e.subject}: {e.status}" for e in named]
    if len(deciding) > MAX_NAMED:
        parts.append(f"and {len(deciding) - MAX_NAMED} more")
    return Overall(status, "; ".join(parts), tuple(e.subject for e in deciding))


def component_entries(stats: Iterable[ComponentStats]) -> list[HealthEntry]:
    """One required entry per component, from its counters."""
    return [HealthEntry(f"component:{s.name}", "component", s.health, s.reason) for s in stats]


@dataclass(frozen=True, slots=True)
class PipelineHealth:
    """What `Pipeline.health()` answers: the overall status and every subject's entry;
    `ready`/`not_ready` are the readiness verdict `/readyz` serves."""

    overall: Overall
    entries: tuple[HealthEntry, ...]
    started: bool
    draining: bool
    reporters: dict[str, str] = field(default_factory=dict)
    """service subject -> the component that reports it."""

    @property
    def components(self) -> list[HealthEntry]:
        return [e for e in self.entries if e.kind == "component"]

    @property
    def services(self) -> list[HealthEntry]:
        return [e for e in self.entries if e.kind == "service"]

    @property
    def not_ready(self) -> list[str]:
        """Why the pipeline is not ready (empty when it is): not started (or already
        stopped), draining, or unhealthy overall."""
        reasons = []
        if not self.started:
            reasons.append("the pipeline is not running (starting or stopped)")
        if self.draining:
            reasons.append("the pipeline is draining (stopping)")
        if self.overall.status is HealthStatus.UNHEALTHY:
            reasons.append(f"unhealthy: {self.overall.reason}")
        return reasons

    @property
    def ready(self) -> bool:
        return not self.not_ready


def reported_entries(pipeline: Pipeline) -> list[tuple[str, HealthEntry]]:
    """(component, entry) for every service entry that a live `HealthReporter` reports."""
    out: list[tuple[str, HealthEntry]] = []
    for name in pipeline.spec.order:
        instance = pipeline.component(name)
        if isinstance(instance, HealthReporter):
            out.extend((name, e) for e in instance.health_entries())
    return out


def pipeline_health(pipeline: Pipeline) -> PipelineHealth:
    """Every component's and reported service's health, aggregated by `overall`."""
    entries: list[HealthEntry] = component_entries(pipeline.component_stats())
    reporters: dict[str, str] = {}
    for component, entry in reported_entries(pipeline):
        entries.append(entry)
        reporters[entry.subject] = component
    return PipelineHealth(
        overall(entries), tuple(entries), pipeline.started, pipeline.draining, reporters
    )


def worst(statuses: Sequence[HealthStatus]) -> HealthStatus:
    """The worst of `statuses` (healthy for none)."""
    return max(statuses, key=SEVERITY.__getitem__, default=HealthStatus.HEALTHY)
