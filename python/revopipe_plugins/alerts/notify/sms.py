"""The `sms` channel: text messages through a Twilio-compatible HTTP API (POST form-encoded
`To`/`From`/`Body` to `/2010-04-01/Accounts/{sid}/Messages.json` with basic auth), so Twilio
or any gateway that speaks its API works."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr

from revopipe.notify import (
    Channel,
    ChannelConfig,
    Delivery,
    Notification,
    delivery_from_response,
)
from revopipe_plugins.alerts.notify.slack import group_status

# Twilio's limit for one message body (it splits into segments itself).
MAX_BODY = 1600


class SmsConfig(ChannelConfig):
    account_sid: str = Field(min_length=1, description="the account SID (basic-auth user)")
    auth_token: SecretStr = Field(description="the auth token (basic-auth password)")
    from_: str = Field(alias="from", min_length=1, description="sender number, e.g. `+15550001`")
    to: list[str] = Field(min_length=1, description="recipient numbers in E.164 form")
    base_url: str = Field(default="https://api.twilio.com", description="the API's base URL")
    send_resolved: bool = Field(default=True, description="also text resolutions")

    @property
    def messages_url(self) -> str:
        sid = quote(self.account_sid, safe="")
        return f"{self.base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"


def sms_body(batch: Sequence[Notification]) -> str:
    """A short text for the group: the status header, then one line per alert."""
    status = group_status(batch)
    firing = sum(1 for n in batch if n.status == "firing")
    names = ", ".join(sorted({n.alert_name for n in batch}))
    lines = [f"[{status.upper()}:{firing if status == 'firing' else len(batch)}] {names}"]
    for n in batch:
        where = n.labels.get("instance") or n.labels.get("service") or ""
        line = f"{n.status} {n.alert_name}"
        if where:
            line += f" @{where}"
        if n.summary:
            line += f": {n.summary}"
        lines.append(line)
    text = "\n".join(lines)
    return text if len(text) <= MAX_BODY else text[: MAX_BODY - 1] + "…"


class SmsChannel(Channel):
    type_name: ClassVar[str] = "sms"
    description: ClassVar[str] = "SMS through a Twilio-compatible Messages API"
    Config = SmsConfig
    config: SmsConfig

    async def send(self, batch: Sequence[Notification]) -> Delivery:
        cfg = self.config
        if not cfg.send_resolved:
            batch = [n for n in batch if n.status != "resolved"]
        if not batch:
            return Delivery.delivered()
        body = sms_body(batch)
        auth = httpx.BasicAuth(cfg.account_sid, cfg.auth_token.get_secret_value())
        # One message per recipient; the batch succeeds only when every one is accepted. A
        # retry re-texts recipients that already got it: the API has no dedup key to prevent it.
        for number in cfg.to:
            try:
                response = await self.client.post(
                    cfg.messages_url,
                    data={"To": number, "From": cfg.from_, "Body": body},
                    auth=auth,
                )
            except httpx.HTTPError as exc:
                return Delivery.retry(
                    f"channel {self.name!r}: cannot reach {cfg.messages_url}: "
                    f"{type(exc).__name__}: {exc}"
                )
            result = delivery_from_response(self.name, response)
            if result.outcome != "delivered":
                return Delivery(
                    result.outcome, f"{result.reason} (to {number})", result.retry_after
                )
        return Delivery.delivered()
