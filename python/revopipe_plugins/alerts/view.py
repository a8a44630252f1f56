"""JSON shapes of alerts, history entries and silences, as the control API answers them and
`revopipe alerts` prints them. Times are Unix nanoseconds plus an ISO-8601 rendering."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from revopipe_plugins.alerts.history import HistoryEntry
from revopipe_plugins.alerts.lifecycle import Alert
from revopipe_plugins.alerts.routing import Silence
from revopipe_plugins.alerts.rule import RuleConfig


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def alert_row(alert: Alert, rule: RuleConfig, muted: list[str]) -> dict[str, Any]:
    return {
        "rule": alert.rule,
        "fingerprint": alert.fingerprint,
        "state": alert.state.value,
        "severity": rule.severity,
        "labels": dict(alert.labels),
        "value": alert.value,
        "active_since": iso(alert.active_since),
        "firing_since": iso(alert.firing_since),
        "resolved_at": iso(alert.resolved_at),
        "acked_by": alert.acked_by,
        "acked_at": iso(alert.acked_at),
        "escalated": alert.escalated,
        "muted_by": muted,
    }


def history_row(e: HistoryEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "kind": e.kind,
        "rule": e.rule,
        "fingerprint": e.fingerprint,
        "labels": e.labels,
        "from": e.from_state.value,
        "to": e.to_state.value,
        "value": e.value,
        "at": iso(e.at),
        "at_ns": e.at,
        "by": e.by,
    }


def silence_row(s: Silence, now: int) -> dict[str, Any]:
    return {
        "id": s.id,
        "matchers": [str(m) for m in s.matchers],
        "starts_at": iso(s.starts_at),
        "ends_at": iso(s.ends_at),
        "active": s.starts_at <= now < s.ends_at,
        "created_by": s.created_by,
        "comment": s.comment,
    }
