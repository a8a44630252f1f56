"""The `webhook` channel: POSTs Alertmanager's webhook payload (version "4") so any receiver
written for Alertmanager works unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import Field

from revopipe.notify import (
    Channel,
    ChannelConfig,
    Delivery,
    Notification,
    delivery_from_response,
)

# Go's zero time, which Alertmanager sends when an alert's end is not known.
ZERO_TIME = "0001-01-01T00:00:00Z"


class WebhookConfig(ChannelConfig):
    url: str = Field(description="where to POST, e.g. `https://hooks.example.com/alerts`")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    max_alerts: int = Field(
        default=0, ge=0, description="alerts per message, the rest counted in truncatedAlerts"
    )
    external_url: str = Field(default="", description="backlink sent as `externalURL`")
    send_acknowledged: bool = Field(
        default=False,
        description="also send acknowledgements (as `firing` with an `acknowledged` annotation)",
    )


def rfc3339(ns: int) -> str:
    if ns <= 0:
        return ZERO_TIME
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest:09d}Z"


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def _group_labels(group_key: str, labels: Mapping[str, str]) -> dict[str, str]:
    # The group key is `name=value,...` of the group_by labels (see routing); fall back to
    # the alert name so receivers always see what grouped the message.
    out: dict[str, str] = {}
    for part in group_key.rpartition(":")[2].split(","):
        key, sep, _ = part.partition("=")
        key = key.strip()
        if sep and key in labels:
            out[key] = labels[key]
    return out or ({"alertname": labels["alertname"]} if "alertname" in labels else {})


def _alert(n: Notification, status: str, ack: bool) -> dict[str, Any]:
    labels = {"alertname": n.alert_name, **n.labels}
    if n.severity:
        labels.setdefault("severity", n.severity)
    annotations = dict(n.annotations)
    if ack:
        annotations["acknowledged"] = "true"
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(n.starts_at_ns),
        "endsAt": rfc3339(n.ends_at_ns),
        "generatorURL": n.generator_url or "",
        "fingerprint": n.fingerprint,
    }


def webhook_payload(
    receiver: str, batch: Sequence[Notification], config: WebhookConfig
) -> dict[str, Any]:
    """Alertmanager's webhook message for `batch` (one group)."""
    alerts = [
        _alert(n, "resolved" if n.status == "resolved" else "firing", n.status == "acknowledged")
        for n in batch
        if n.status != "acknowledged" or config.send_acknowledged
    ]
    truncated = 0
    if config.max_alerts and len(alerts) > config.max_alerts:
        truncated = len(alerts) - config.max_alerts
        alerts = alerts[: config.max_alerts]
    labels = [a["labels"] for a in alerts]
    group_key = batch[0].group_key if batch else ""
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": truncated,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": _group_labels(group_key, labels[0]) if labels else {},
        "commonLabels": _common(labels),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": config.external_url,
        "alerts": alerts,
    }


def idempotency_key(batch: Sequence[Notification]) -> str:
    """Same batch, same key: lets a receiver drop a resend after a crash mid-delivery."""
    digest = hashlib.sha256()
    for key in sorted(n.dedup_key for n in batch):
        digest.update(key.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


class WebhookChannel(Channel):
    type_name: ClassVar[str] = "webhook"
    description: ClassVar[str] = "Alertmanager-compatible webhook (payload version 4)"
    Config = WebhookConfig
    config: WebhookConfig

    async def send(self, batch: Sequence[Notification]) -> Delivery:
        payload = webhook_payload(self.name, batch, self.config)
        if not payload["alerts"]:
            return Delivery.delivered()  # only acknowledgements, which this receiver skips
        headers = {**self.config.headers, "Idempotency-Key": idempotency_key(batch)}
        try:
            response = await self.client.post(self.config.url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            return Delivery.retry(
                f"channel {self.name!r}: cannot reach {self.config.url}: "
                f"{type(exc).__name__}: {exc}"
            )
        return delivery_from_response(self.name, response)
