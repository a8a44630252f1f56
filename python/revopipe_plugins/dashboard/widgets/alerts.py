"""`alerts`: active alerts with Acknowledge and Silence buttons, read from the `alerts`
processor's `list` action (or, without one, from the `alert` events seen)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from revopipe.components import ControlError
from revopipe.events import Alert
from revopipe.widgets import Widget, WidgetConfig

ACTIVE = ("pending", "firing")
SILENCE_SECONDS = 3600.0


def _matcher(key: str, value: str) -> str:
    return f"{key}={json.dumps(value)}"


class AlertsWidget(Widget[WidgetConfig]):
    type_name = "alerts"
    title = "Active alerts"
    description = "pending and firing alerts, with acknowledge and silence buttons"
    default_series: ClassVar[tuple[str, ...]] = ()
    polls = True

    async def data(self, params: Mapping[str, str]) -> dict[str, Any]:
        name = self.source.alerts_component
        control = self.source.control
        if name is None or control is None:
            return self._from_events()
        try:
            listing = await control(name, "list", {})
        except ControlError as exc:
            if exc.status != 409:
                raise
            # starting or restarting: say so instead of failing the widget
            out = self._shape([])
            out["note"] = exc.message
            return out
        rows = []
        for a in listing.get("alerts", []):
            if a.get("state") not in ACTIVE:
                continue
            labels = {str(k): str(v) for k, v in (a.get("labels") or {}).items()}
            fp = str(a["fingerprint"])
            matchers = [_matcher("alertname", str(a["rule"]))] + [
                _matcher(k, v) for k, v in sorted(labels.items()) if k != "alertname"
            ]
            actions = []
            if not a.get("acked_by"):
                actions.append(
                    {
                        "label": "Acknowledge",
                        "post": f"/api/alerts/{quote(fp, safe='')}/ack",
                        "body": {},
                    }
                )
            actions.append(
                {
                    "label": "Silence 1h",
                    "post": "/api/silences",
                    "body": {
                        "matchers": matchers,
                        "duration": SILENCE_SECONDS,
                        "comment": f"silenced from the dashboard: {a['rule']}",
                    },
                }
            )
            rows.append(
                {
                    "fingerprint": fp,
                    "rule": a["rule"],
                    "state": a["state"],
                    "severity": a.get("severity", ""),
                    "labels": ", ".join(f"{k}={v}" for k, v in sorted(labels.items())),
                    "value": a.get("value"),
                    "since": a.get("firing_since") or a.get("active_since"),
                    "acked_by": a.get("acked_by") or "",
                    "muted_by": a.get("muted_by") or [],
                    "_actions": actions,
                }
            )
        out = self._shape(rows)
        out["component"] = name
        return out

    def _from_events(self) -> dict[str, Any]:
        latest: dict[tuple[str, tuple[tuple[str, str], ...]], Alert] = {}
        for e in self.source.events("alert"):
            if isinstance(e, Alert):
                latest[(e.rule, e.labels)] = e
        rows: list[dict[str, Any]] = [
            {
                "fingerprint": "",
                "rule": a.rule,
                "state": a.state,
                "severity": str(a.severity),
                "labels": ", ".join(f"{k}={v}" for k, v in a.labels),
                "value": a.value,
                "since": a.timestamp,
                "acked_by": "",
                "muted_by": [],
            }
            for a in latest.values()
            if a.state in ACTIVE
        ]
        out = self._shape(rows)
        out["note"] = "read-only: no alerts processor in this pipeline to act on"
        return out

    @staticmethod
    def _shape(rows: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alerts": rows,
            "cards": [
                {
                    "label": "Firing",
                    "value": sum(1 for r in rows if r["state"] == "firing"),
                    "status": "unhealthy"
                    if any(r["state"] == "firing" for r in rows)
                    else "healthy",
                },
                {"label": "Pending", "value": sum(1 for r in rows if r["state"] == "pending")},
            ],
            "table": {
                "columns": [
                    {"key": "rule", "label": "Rule"},
                    {"key": "state", "label": "State"},
                    {"key": "severity", "label": "Severity"},
                    {"key": "labels", "label": "Labels"},
                    {"key": "acked_by", "label": "Acked by"},
                ],
                "rows": rows,
            },
        }
        if not rows:
            out["empty"] = "no active alerts"
        return out
