"""The alert lifecycle of one rule: a state machine per label set, driven by evaluation
results, with acknowledgement, repeat notifications and escalation. Pure logic: time comes
in as an argument, nothing is sent or written here.

States: inactive → pending → firing → resolved → inactive.

- The condition holds for a label set (it is in `evaluate()`'s result): inactive or resolved
  becomes pending, or firing at once when `for` is 0. Pending becomes firing once the
  condition has held at every evaluation for `for`.
- Pending and the condition fails (or the label set is missing from the result: missing
  data counts as false): back to inactive, the timer restarts next time.
- Firing and the condition fails: still firing until it has failed for `keep_firing_for`
  (so a flapping condition does not resolve and re-fire), then resolved. A resolved alert is
  kept for `resolved_retention` (for listings) and then dropped to inactive.
- While firing: a repeat notification every `repeat_interval` unless acknowledged, and
  escalation tier k is due `k * escalate_after` after firing started, once per tier, while
  unacknowledged. A new incident (firing again after resolved) starts unacknowledged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from functools import lru_cache
from typing import Any, Literal

from revopipe.events import Tags
from revopipe_plugins.alerts.rule import RuleConfig

__all__ = [
    "Acknowledged",
    "Alert",
    "Notification",
    "RuleLifecycle",
    "State",
    "Transition",
    "fingerprint",
]

_NS = 1_000_000_000


class State(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@lru_cache(maxsize=1 << 16)  # every step fingerprints every result; label sets repeat
def fingerprint(rule: str, labels: Tags) -> str:
    """Stable across processes and versions: sha256 of the rule name and sorted labels."""
    text = json.dumps([rule, sorted(labels)], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Alert:
    """The current state of one (rule, label set)."""

    rule: str
    fingerprint: str
    labels: Tags
    state: State
    value: float
    active_since: int  # when the condition started holding (pending start)
    last_true: int  # last evaluation at which the condition held
    firing_since: int | None = None
    resolved_at: int | None = None
    last_notified: int | None = None
    acked_by: str | None = None
    acked_at: int | None = None
    escalated: int = 0  # escalation tiers already emitted

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        d["labels"] = [list(p) for p in self.labels]
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Alert:
        # keys from an older or newer version are dropped rather than failing the restore
        data = {k: v for k, v in d.items() if k in _ALERT_FIELDS}
        data["state"] = State(data["state"])
        data["labels"] = tuple((str(k), str(v)) for k, v in data["labels"])
        return cls(**data)


_ALERT_FIELDS = frozenset(f.name for f in fields(Alert))


@dataclass(frozen=True, slots=True)
class Transition:
    rule: str
    fingerprint: str
    labels: Tags
    from_state: State
    to_state: State
    value: float
    at: int


@dataclass(frozen=True, slots=True)
class Acknowledged:
    rule: str
    fingerprint: str
    labels: Tags
    state: State
    value: float
    at: int
    by: str


@dataclass(frozen=True, slots=True)
class Notification:
    """Something to tell people. `reason`: firing (newly), repeat (still firing after
    repeat_interval), escalate (tier `tier`, to `channel` — None when the rule names no
    channel for that tier, leaving it to routing), resolved."""

    reason: Literal["firing", "repeat", "escalate", "resolved"]
    rule: str
    fingerprint: str
    labels: dict[str, str]  # series labels + rule labels + alertname + severity
    annotations: dict[str, str]
    severity: str
    value: float
    starts_at: int
    at: int
    tier: int = 0
    channel: str | None = None


Event = Transition | Acknowledged | Notification


class RuleLifecycle:
    """The alerts of one rule. `step` after each evaluation; `ack` from people."""

    def __init__(self, rule: RuleConfig, resolved_retention: float = 15 * 60.0) -> None:
        self.rule = rule
        self._for = round(rule.for_ * _NS)
        self._keep = round(rule.keep_firing_for * _NS)
        self._repeat = round(rule.repeat_interval * _NS)
        self._escalate = None if rule.escalate_after is None else round(rule.escalate_after * _NS)
        self._tiers = max(1, len(rule.escalate_to)) if self._escalate is not None else 0
        self._retention = round(resolved_retention * _NS)
        self._alerts: dict[str, Alert] = {}

    @property
    def alerts(self) -> dict[str, Alert]:
        """Pending, firing and recently resolved alerts by fingerprint (read-only)."""
        return self._alerts

    def restore(self, alerts: list[Alert]) -> None:
        """Resume from persisted state (after a restart): timers continue where they were."""
        self._alerts = {a.fingerprint: a for a in alerts if a.rule == self.rule.name}

    def step(self, now: int, results: Mapping[Tags, float]) -> list[Event]:
        events: list[Event] = []
        seen: set[str] = set()
        for labels, value in results.items():
            fp = fingerprint(self.rule.name, labels)
            seen.add(fp)
            alert = self._alerts.get(fp)
            if alert is None or alert.state is State.RESOLVED:
                old = State.INACTIVE if alert is None else alert.state
                alert = Alert(self.rule.name, fp, labels, State.PENDING, value, now, now)
                self._alerts[fp] = alert
                events.append(self._transition(alert, old, State.PENDING, now))
            else:
                alert.value = value
                alert.last_true = now
            if alert.state is State.PENDING and now - alert.active_since >= self._for:
                self._fire(alert, now, events)
            elif alert.state is State.FIRING:
                self._while_firing(alert, now, events)
        for fp, alert in list(self._alerts.items()):
            if fp in seen:
                continue
            if alert.state is State.PENDING:
                del self._alerts[fp]
                events.append(self._transition(alert, State.PENDING, State.INACTIVE, now))
            elif alert.state is State.FIRING:
                if now - alert.last_true >= self._keep:
                    alert.state = State.RESOLVED
                    alert.resolved_at = now
                    events.append(self._transition(alert, State.FIRING, State.RESOLVED, now))
                    events.append(self._notification("resolved", alert, now))
                else:
                    self._while_firing(alert, now, events)
            elif alert.state is State.RESOLVED:
                assert alert.resolved_at is not None
                if now - alert.resolved_at >= self._retention:
                    del self._alerts[fp]
                    events.append(self._transition(alert, State.RESOLVED, State.INACTIVE, now))
        return events

    def ack(self, fingerprint: str, by: str, at: int) -> Acknowledged:
        """Acknowledge a pending or firing alert: stops its escalation and repeats."""
        alert = self._alerts.get(fingerprint)
        if alert is None or alert.state not in (State.PENDING, State.FIRING):
            what = "is not active" if alert is None else f"is {alert.state.value}"
            raise LookupError(
                f"rule {self.rule.name!r}: alert {fingerprint} {what}; only pending or firing "
                "alerts can be acknowledged (see `revopipe alerts list`)"
            )
        alert.acked_by = by
        alert.acked_at = at
        return Acknowledged(
            alert.rule, alert.fingerprint, alert.labels, alert.state, alert.value, at, by
        )

    # --- internals ----------------------------------------------------------------------

    def _fire(self, alert: Alert, now: int, events: list[Event]) -> None:
        alert.state = State.FIRING
        alert.firing_since = now
        alert.last_notified = now
        events.append(self._transition(alert, State.PENDING, State.FIRING, now))
        events.append(self._notification("firing", alert, now))
        self._escalations(alert, now, events)

    def _while_firing(self, alert: Alert, now: int, events: list[Event]) -> None:
        if alert.acked_by is not None:
            return
        assert alert.last_notified is not None
        if now - alert.last_notified >= self._repeat:
            alert.last_notified = now
            events.append(self._notification("repeat", alert, now))
        self._escalations(alert, now, events)

    def _escalations(self, alert: Alert, now: int, events: list[Event]) -> None:
        if self._escalate is None or alert.acked_by is not None:
            return
        assert alert.firing_since is not None
        due = min(self._tiers, (now - alert.firing_since) // self._escalate)
        while alert.escalated < due:
            alert.escalated += 1
            tier = alert.escalated
            targets = self.rule.escalate_to
            channel = targets[tier - 1] if tier <= len(targets) else None
            events.append(
                replace(self._notification("escalate", alert, now), tier=tier, channel=channel)
            )

    def _transition(self, alert: Alert, old: State, new: State, now: int) -> Transition:
        return Transition(alert.rule, alert.fingerprint, alert.labels, old, new, alert.value, now)

    def _notification(
        self, reason: Literal["firing", "repeat", "escalate", "resolved"], alert: Alert, now: int
    ) -> Notification:
        series = dict(alert.labels)
        labels = {**series, **self.rule.labels}
        labels["alertname"] = self.rule.name
        labels["severity"] = self.rule.severity
        return Notification(
            reason=reason,
            rule=self.rule.name,
            fingerprint=alert.fingerprint,
            labels=labels,
            annotations=self.rule.render_annotations(labels, alert.value),
            severity=self.rule.severity,
            value=alert.value,
            starts_at=alert.firing_since if alert.firing_since is not None else now,
            at=now,
        )
