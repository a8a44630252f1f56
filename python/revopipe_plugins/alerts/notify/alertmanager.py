"""The `alertmanager` channel: forwards alerts to a real Alertmanager through its v2 API
(`POST /api/v2/alerts`, a list of postable alerts), so existing Alertmanager routing,
silences and receivers keep working behind revopipe."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr, model_validator

from revopipe.notify import (
    Channel,
    ChannelConfig,
    Delivery,
    Notification,
    delivery_from_response,
)
from revopipe_plugins.alerts.notify.webhook import rfc3339

_BAD_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


class AlertmanagerConfig(ChannelConfig):
    url: str = Field(description="Alertmanager's base URL, e.g. `http://alertmanager:9093`")
    username: str = Field(default="", description="basic-auth user; empty = no basic auth")
    password: SecretStr = Field(default=SecretStr(""), description="basic-auth password")
    bearer_token: SecretStr = Field(default=SecretStr(""), description="sent as Bearer token")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    send_acknowledged: bool = Field(
        default=True,
        description="resend acknowledged alerts as firing with an `acknowledged` annotation",
    )

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerConfig:
        if self.username and self.bearer_token.get_secret_value():
            raise ValueError("set either username/password or bearer_token, not both")
        return self

    @property
    def alerts_url(self) -> str:
        return self.url.rstrip("/") + "/api/v2/alerts"


def label_name(name: str) -> str:
    """Alertmanager refuses the whole post for one label name outside [a-zA-Z_][a-zA-Z0-9_]*,
    so names are made valid instead of losing the alert."""
    fixed = _BAD_LABEL_CHARS.sub("_", name) or "_"
    return "_" + fixed if fixed[0].isdigit() else fixed


def postable_alert(n: Notification, now_ns: int) -> dict[str, Any]:
    labels = {label_name(k): v for k, v in n.labels.items() if v}
    labels["alertname"] = n.alert_name
    if n.severity:
        labels.setdefault("severity", n.severity)
    annotations = dict(n.annotations)
    if n.status == "acknowledged":
        annotations["acknowledged"] = "true"
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(n.starts_at_ns),
        "generatorURL": n.generator_url or "",
    }
    if n.status == "resolved":
        # A past endsAt is what tells Alertmanager the alert is resolved.
        alert["endsAt"] = rfc3339(n.ends_at_ns or now_ns)
    return alert


class AlertmanagerChannel(Channel):
    type_name: ClassVar[str] = "alertmanager"
    description: ClassVar[str] = "posts alerts to a Prometheus Alertmanager (API v2)"
    Config = AlertmanagerConfig
    config: AlertmanagerConfig

    async def send(self, batch: Sequence[Notification]) -> Delivery:
        cfg = self.config
        now_ns = time.time_ns()
        alerts = [
            postable_alert(n, now_ns)
            for n in batch
            if n.status != "acknowledged" or cfg.send_acknowledged
        ]
        if not alerts:
            return Delivery.delivered()
        headers = dict(cfg.headers)
        auth: httpx.BasicAuth | None = None
        if cfg.username:
            auth = httpx.BasicAuth(cfg.username, cfg.password.get_secret_value())
        elif cfg.bearer_token.get_secret_value():
            headers["Authorization"] = f"Bearer {cfg.bearer_token.get_secret_value()}"
        try:
            response = await self.client.post(
                cfg.alerts_url, json=alerts, headers=headers, auth=auth or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as exc:
            return Delivery.retry(
                f"channel {self.name!r}: cannot reach {cfg.alerts_url}: {type(exc).__name__}: {exc}"
            )
        return delivery_from_response(self.name, response)
