"""The `pagerduty` channel: PagerDuty Events API v2 alert events, one per notification,
trigger/acknowledge/resolve keyed by the notification's dedup key.

Spec: https://developer.pagerduty.com/docs/events-API-v2/trigger-events/ — a 202 means the
event was accepted; 400 is a malformed event (permanent); 429 and 5xx are retried."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field, SecretStr

from revopipe.notify import (
    Channel,
    ChannelConfig,
    Delivery,
    Notification,
    delivery_from_response,
)
from revopipe_plugins.alerts.notify.webhook import rfc3339

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
PdSeverity = Literal["critical", "error", "warning", "info"]
# The spec's limits: summary 1024 characters, dedup_key 255.
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255

EVENT_ACTIONS = {"firing": "trigger", "acknowledged": "acknowledge", "resolved": "resolve"}
_SEVERITIES: dict[str, PdSeverity] = {
    "critical": "critical",
    "page": "critical",
    "fatal": "critical",
    "error": "error",
    "major": "error",
    "high": "error",
    "warning": "warning",
    "warn": "warning",
    "minor": "warning",
    "info": "info",
    "informational": "info",
    "low": "info",
    "none": "info",
}


class PagerDutyConfig(ChannelConfig):
    routing_key: SecretStr = Field(description="the integration key of a PagerDuty service")
    url: str = Field(default=DEFAULT_URL, description="the Events API v2 enqueue endpoint")
    source: str = Field(
        default="",
        description="`payload.source` when the alert has no `instance`/`host` label",
    )
    client: str = Field(default="revopipe", description="shown as the event's sender")
    client_url: str = Field(default="", description="backlink shown with the incident")
    default_severity: PdSeverity = Field(
        default="error", description="PagerDuty severity for an unknown alert severity"
    )


def pd_severity(severity: str, default: PdSeverity = "error") -> PdSeverity:
    return _SEVERITIES.get(severity.strip().lower(), default)


def _source(n: Notification, config: PagerDutyConfig) -> str:
    for key in ("instance", "host", "hostname", "service"):
        if n.labels.get(key):
            return n.labels[key]
    return config.source or "revopipe"


def _dedup_key(n: Notification) -> str:
    # Trigger, acknowledge and resolve of one alert must share a key so PagerDuty updates
    # the same incident: use the fingerprint, not the per-status dedup key.
    return (n.fingerprint or n.dedup_key)[:MAX_DEDUP_KEY]


def pagerduty_event(n: Notification, config: PagerDutyConfig) -> dict[str, Any]:
    """The Events API v2 body for one notification."""
    action = EVENT_ACTIONS[n.status]
    summary = n.summary or f"{n.alert_name} {n.status}"
    labels = {"alertname": n.alert_name, **n.labels}
    event: dict[str, Any] = {
        "routing_key": config.routing_key.get_secret_value(),
        "event_action": action,
        "dedup_key": _dedup_key(n),
        "client": config.client,
        "payload": {
            "summary": summary[:MAX_SUMMARY],
            "source": _source(n, config),
            "severity": pd_severity(n.severity, config.default_severity),
            "timestamp": rfc3339(n.ends_at_ns if n.status == "resolved" else n.starts_at_ns),
            "class": n.alert_name,
            "custom_details": {
                "status": n.status,
                "severity": n.severity,
                "labels": labels,
                "annotations": dict(n.annotations),
                "notification_key": n.dedup_key,
            },
        },
    }
    if "job" in n.labels:
        event["payload"]["group"] = n.labels["job"]
    if config.client_url:
        event["client_url"] = config.client_url
    if n.generator_url:
        event["links"] = [{"href": n.generator_url, "text": n.alert_name}]
    return event


class PagerDutyChannel(Channel):
    type_name: ClassVar[str] = "pagerduty"
    description: ClassVar[str] = "PagerDuty Events API v2: trigger, acknowledge, resolve"
    Config = PagerDutyConfig
    config: PagerDutyConfig

    async def send(self, batch: Sequence[Notification]) -> Delivery:
        # Events are sent in order and the batch succeeds only when all do; a resend after a
        # partial failure repeats events PagerDuty already has, which its dedup_key absorbs.
        for n in batch:
            try:
                response = await self.client.post(
                    self.config.url, json=pagerduty_event(n, self.config)
                )
            except httpx.HTTPError as exc:
                return Delivery.retry(
                    f"channel {self.name!r}: cannot reach {self.config.url}: "
                    f"{type(exc).__name__}: {exc}"
                )
            result = delivery_from_response(self.name, response)
            if result.outcome != "delivered":
                return result
        return Delivery.delivered()
