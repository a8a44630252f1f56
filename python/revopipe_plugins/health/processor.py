"""The `health` processor: the health of monitored services, derived from the stream by
declared rules, reported to the pipeline's health model (`revopipe.health`) and downstream.

Per service, every `evaluate_every` (and, at most that often, as batches arrive):

1. no row selected by `match` for `stale_after` (or none yet that long after start):
   unhealthy, "no data for 30s";
2. `unhealthy_when` holds: unhealthy;
3. a firing alert (an `Alert` event) names the service: `critical` -> unhealthy,
   `warning` -> degraded (`info` is ignored);
4. `degraded_when` holds: degraded;
5. otherwise healthy. Before the first row arrives (and before `stale_after` has passed)
   a service is degraded, "no data yet": it is not known to be healthy.

The worst of 2-4 wins, with the reasons of all that gave it. Conditions use the `alerts`
processor's rule language (`revopipe_plugins.alerts.rules`: `value(up) == 0`,
`error_ratio(...) > 0.05`, `p99(...) > 0.5`, ...), evaluated over the service's own
series only (those whose tags include every `match` label), so a rule needs no matchers
to stay within its service.

Batches pass through unchanged; a change of a service's status or reason adds a batch with
a `Health(subject="service:<name>")` event and the gauge `revopipe.service.health`
(1 / 0.5 / 0, tag `service`), which is also repeated every `report_every`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from revopipe.batch import Batch, MetricBatch, MetricBatchBuilder
from revopipe.components import ControlError, ControlMode, Processor
from revopipe.config import Duration, ProcessorConfig
from revopipe.config.units import format_duration
from revopipe.events import Alert, Health, HealthStatus, MetricKind, Severity, Tags, make_tags
from revopipe.health import HEALTH_VALUE, SEVERITY, HealthEntry
from revopipe_plugins.alerts.rules import Expr, Snapshot, evaluate, parse

_NS = 1_000_000_000
# Memoized "does this label set belong to the service" answers, per service; a stream
# with unbounded label sets must not grow it without bound.
_MATCH_MEMO_MAX = 65_536
_ALERT_STATUS = {
    Severity.CRITICAL: HealthStatus.UNHEALTHY,
    Severity.WARNING: HealthStatus.DEGRADED,
}


class ServiceRule(BaseModel):
    """One `[[processors.<name>.services]]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$",
        description="the service, reported as subject `service:<name>`",
    )
    match: dict[str, str] = Field(
        default_factory=dict,
        description="tags a row must carry (all of them, exactly) to belong to this "
        "service, e.g. { job = 'api' }; empty: every row",
    )
    unhealthy_when: str | None = Field(
        default=None, description="a rule condition that makes it unhealthy, e.g. 'value(up) == 0'"
    )
    degraded_when: str | None = Field(
        default=None,
        description="a rule condition that makes it degraded, e.g. "
        "'error_ratio(http.requests{status=~\"5..\"}, http.requests) > 0.05'",
    )
    stale_after: Duration = Field(
        default=30.0, gt=0, description="no row for this long makes it unhealthy, e.g. '30s'"
    )
    required: bool = Field(
        default=True,
        description="false: when unhealthy it degrades the pipeline's overall status "
        "instead of making it unhealthy",
    )

    _unhealthy: Expr | None = PrivateAttr(default=None)
    _degraded: Expr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> ServiceRule:
        # RuleSyntaxError is a ValueError naming the rule, the line and the column
        if self.unhealthy_when is not None:
            self._unhealthy = parse(self.unhealthy_when, rule=f"{self.name}.unhealthy_when")
        if self.degraded_when is not None:
            self._degraded = parse(self.degraded_when, rule=f"{self.name}.degraded_when")
        return self

    @property
    def unhealthy_expr(self) -> Expr | None:
        return self._unhealthy

    @property
    def degraded_expr(self) -> Expr | None:
        return self._degraded


class HealthConfig(ProcessorConfig):
    services: list[ServiceRule] = Field(
        min_length=1, description="the monitored services, each a [[...services]] table"
    )
    evaluate_every: Duration = Field(
        default=1.0, gt=0, description="re-evaluate every service this often, e.g. '1s'"
    )
    report_every: Duration = Field(
        default=10.0,
        gt=0,
        description="repeat the revopipe.service.health gauge this often (it is also sent "
        "on every change), e.g. '10s'",
    )
    alerts: bool = Field(
        default=True,
        description="map firing alerts to the service they name (critical: unhealthy, "
        "warning: degraded)",
    )
    alert_label: str = Field(
        default="service",
        min_length=1,
        description="the alert label naming the service; an alert whose labels include "
        "all of a service's non-empty `match` also counts",
    )

    @field_validator("services")
    @classmethod
    def _unique(cls, v: list[ServiceRule]) -> list[ServiceRule]:
        seen: set[str] = set()
        for i, s in enumerate(v):
            if s.name in seen:
                raise ValueError(
                    f"services.{i}: service {s.name!r} is declared twice; give each "
                    "[[services]] table its own name"
                )
            seen.add(s.name)
        return v


@dataclass
class _Service:
    rule: ServiceRule
    match: Tags
    snapshot: Snapshot = field(default_factory=Snapshot)
    memo: dict[Tags, bool] = field(default_factory=dict)
    last_seen: float | None = None
    status: HealthStatus | None = None
    reason: str = ""
    since: float | None = None
    alerts: dict[tuple[str, Tags], tuple[Severity, str]] = field(default_factory=dict)
    error: str = ""

    def owns(self, tags: Tags) -> bool:
        hit = self.memo.get(tags)
        if hit is None:
            if len(self.memo) >= _MATCH_MEMO_MAX:
                self.memo.clear()
            have = dict(tags)
            hit = self.memo[tags] = all(have.get(k) == v for k, v in self.match)
        return hit


class HealthProcessor(Processor[HealthConfig]):
    type_name = "health"
    Config = HealthConfig
    description = "derives monitored services' health from the stream by declared rules"
    control_actions: ClassVar[Mapping[str, ControlMode]] = {"services": "read"}

    clock: Callable[[], float] = staticmethod(time.monotonic)
    """Monotonic seconds for staleness; tests substitute their own."""
    wall: Callable[[], float] = staticmethod(time.time)
    """Wall-clock seconds, for `since` and event timestamps."""

    async def start(self) -> None:
        cfg = self.config
        self.tick_interval = cfg.evaluate_every
        self._started = self.clock()
        self._last_eval: float | None = None
        self._last_report: float | None = None
        self.services = {s.name: _Service(s, make_tags(s.match)) for s in cfg.services}

    # -- the stream ---------------------------------------------------------------------

    async def process(self, batch: Batch) -> Batch | Sequence[Batch] | None:
        now = self.clock()
        self.observe(batch, now)
        out = None
        if self._last_eval is None or now - self._last_eval >= self.config.evaluate_every:
            out = self.evaluate(now)
        return batch if out is None else [batch, out]

    async def tick(self) -> Batch | Sequence[Batch] | None:
        return self.evaluate(self.clock())

    def observe(self, batch: Batch, now: float) -> None:
        """Take a batch's rows into the snapshots of the services they belong to, and its
        alert events into the services they name."""
        mb = batch.metrics
        if len(mb):
            for svc in self.services.values():
                if not svc.match:
                    mine: MetricBatch = mb
                else:
                    owns = svc.owns
                    keep = [owns(t) for t in mb.tags]
                    if not any(keep):
                        continue
                    mine = mb.select(keep)
                svc.snapshot.update(mine)
                svc.last_seen = now
        if self.config.alerts:
            for e in batch.events:
                if isinstance(e, Alert):
                    self._take_alert(e)

    def _take_alert(self, alert: Alert) -> None:
        labels = dict(alert.labels)
        named = labels.get(self.config.alert_label)
        for svc in self.services.values():
            if named != svc.rule.name and not (
                svc.match and all(labels.get(k) == v for k, v in svc.match)
            ):
                continue
            key = (alert.rule, alert.labels)
            if alert.state == "firing" and alert.severity in _ALERT_STATUS:
                svc.alerts[key] = (alert.severity, alert.summary)
            else:
                svc.alerts.pop(key, None)

    # -- evaluation ---------------------------------------------------------------------

    def evaluate(self, now: float) -> Batch | None:
        """Re-derive every service's status; a batch with the changes (and the gauges,
        when they are due), or None."""
        self._last_eval = now
        events: list[Health] = []
        wall = self.wall()
        for svc in self.services.values():
            status, reason = self._judge(svc, now, wall)
            if status is svc.status and reason == svc.reason:
                continue
            if status is not svc.status:
                svc.since = wall
                if svc.status is not None:
                    self.log.info(
                        "service %r is %s (was %s)%s",
                        svc.rule.name,
                        status,
                        svc.status,
                        f": {reason}" if reason else "",
                    )
            svc.status, svc.reason = status, reason
            events.append(Health(f"service:{svc.rule.name}", status, reason, round(wall * _NS)))
        report = (
            bool(events)
            or self._last_report is None
            or now - self._last_report >= self.config.report_every
        )
        if not report:
            return None
        self._last_report = now
        b = MetricBatchBuilder(default_ts=round(wall * _NS))
        for svc in self.services.values():
            assert svc.status is not None
            b.add(
                "revopipe.service.health",
                HEALTH_VALUE[svc.status],
                MetricKind.GAUGE,
                "1",
                (("service", svc.rule.name),),
            )
        return Batch(b.build(), tuple(events))

    def _judge(self, svc: _Service, now: float, wall: float) -> tuple[HealthStatus, str]:
        rule = svc.rule
        stale = rule.stale_after
        if svc.last_seen is None:
            if now - self._started < stale:
                return HealthStatus.DEGRADED, "no data yet"
            return HealthStatus.UNHEALTHY, f"no data for {format_duration(stale)} (none yet)"
        if now - svc.last_seen >= stale:
            return HealthStatus.UNHEALTHY, f"no data for {format_duration(stale)}"
        # Series that stopped reporting read as missing, as in the alerts processor.
        svc.snapshot.expire(round((wall - stale) * _NS))
        found: list[tuple[HealthStatus, str]] = []
        if rule.unhealthy_expr is not None:
            held = self._holds(rule.unhealthy_expr, svc)
            if held is not None:
                text = f"unhealthy_when {rule.unhealthy_when} {held}"
                found.append((HealthStatus.UNHEALTHY, text))
        for (name, _), (severity, summary) in sorted(svc.alerts.items()):
            text = f"alert {name} firing ({severity})"
            found.append((_ALERT_STATUS[severity], f"{text}: {summary}" if summary else text))
        if rule.degraded_expr is not None:
            held = self._holds(rule.degraded_expr, svc)
            if held is not None:
                found.append((HealthStatus.DEGRADED, f"degraded_when {rule.degraded_when} {held}"))
        if not found:
            return HealthStatus.HEALTHY, ""
        status = max((s for s, _ in found), key=SEVERITY.__getitem__)
        return status, "; ".join(r for s, r in found if s is status)

    def _holds(self, expr: Expr, svc: _Service) -> str | None:
        """None when the condition does not hold, else where it holds, for the reason."""
        try:
            result = evaluate(expr, svc.snapshot)
        except Exception as exc:
            # A condition that cannot be evaluated reads as not holding, as in the alerts
            # processor; counted so it shows, logged once per message.
            self.context.stats.errors += 1
            if svc.error != repr(exc):
                self.log.error("service %r: evaluating a condition raised %r", svc.rule.name, exc)
            svc.error = repr(exc)
            return None
        if not result:
            return None
        sets = sorted(result)
        first = _labels_text(sets[0])
        more = f" and {len(sets) - 1} more" if len(sets) > 1 else ""
        return f"holds for {first}{more}"

    # -- the health model and the control API -------------------------------------------

    def health_entries(self) -> Iterable[HealthEntry]:
        """The services' current health, for `Pipeline.health()` (see `revopipe.health`)."""
        return [
            HealthEntry(
                f"service:{svc.rule.name}",
                "service",
                svc.status or HealthStatus.DEGRADED,
                svc.reason if svc.status is not None else "not evaluated yet",
                svc.since,
                svc.rule.required,
            )
            for svc in self.services.values()
        ]

    async def control(self, action: str, params: Mapping[str, Any]) -> Any:
        if action != "services":
            return await super().control(action, params)
        unknown = set(params) - {"name"}
        if unknown:
            raise ControlError(
                f"services: unknown parameter(s) {', '.join(sorted(unknown))}; the only one "
                "is `name` (a service name)"
            )
        now = self.clock()
        wanted = params.get("name")
        rows = []
        for svc in self.services.values():
            if wanted is not None and svc.rule.name != wanted:
                continue
            rows.append(
                {
                    "name": svc.rule.name,
                    "status": str(svc.status) if svc.status else None,
                    "reason": svc.reason,
                    "since": svc.since,
                    "required": svc.rule.required,
                    "match": dict(svc.match),
                    "last_seen_seconds_ago": None
                    if svc.last_seen is None
                    else round(now - svc.last_seen, 3),
                    "series": len(svc.snapshot),
                    "firing_alerts": sorted(name for name, _ in svc.alerts),
                }
            )
        if wanted is not None and not rows:
            known = ", ".join(self.services)
            raise ControlError(f"services: no service named {wanted!r}; services: {known}", 404)
        return rows


def _labels_text(tags: Tags) -> str:
    if not tags:
        return "{}"
    return "{" + ", ".join(f'{k}="{v}"' for k, v in tags) + "}"
