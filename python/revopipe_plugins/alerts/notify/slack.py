"""The `slack` channel: one message per group to a Slack incoming webhook, a coloured
attachment holding Block Kit blocks (status, alert names, summary/description, labels)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from revopipe.notify import (
    Channel,
    ChannelConfig,
    Delivery,
    Notification,
    delivery_from_response,
)

# Slack rejects a section text above 3000 characters and a message above 50 blocks.
MAX_SECTION_TEXT = 3000
MAX_ALERT_BLOCKS = 40

COLOURS = {"firing": "#d93025", "acknowledged": "#f2a900", "resolved": "#2eb67d"}


class SlackConfig(ChannelConfig):
    webhook_url: SecretStr = Field(
        description="the incoming webhook URL (`https://hooks.slack.com/services/...`)"
    )
    channel: str = Field(default="", description="override the webhook's default channel")
    username: str = Field(default="", description="override the webhook's bot name")
    icon_emoji: str = Field(default="", description="override the bot icon, e.g. `:fire:`")
    external_url: str = Field(default="", description="link shown under the message")
    send_resolved: bool = Field(default=True, description="also post resolutions")


def _clip(text: str, limit: int = MAX_SECTION_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def group_status(batch: Sequence[Notification]) -> str:
    """The most urgent status of the group: firing, then acknowledged, then resolved."""
    statuses = {n.status for n in batch}
    for status in ("firing", "acknowledged", "resolved"):
        if status in statuses:
            return status
    return "resolved"


def _alert_block(n: Notification) -> dict[str, Any]:
    lines = [f"*{n.alert_name}* ({n.severity or 'none'}) — {n.status}"]
    if n.summary:
        lines.append(n.summary)
    if n.description:
        lines.append(f"_{n.description}_")
    if n.labels:
        lines.append(" ".join(f"`{k}={v}`" for k, v in sorted(n.labels.items())))
    if n.generator_url:
        lines.append(f"<{n.generator_url}|source>")
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip("\n".join(lines))}}


def slack_payload(batch: Sequence[Notification], config: SlackConfig) -> dict[str, Any]:
    """The webhook message for `batch` (one group)."""
    status = group_status(batch)
    firing = sum(1 for n in batch if n.status == "firing")
    names = sorted({n.alert_name for n in batch})
    title = f"[{status.upper()}:{firing if status == 'firing' else len(batch)}] {', '.join(names)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(title, 150)}}
    ]
    shown = list(batch[:MAX_ALERT_BLOCKS])
    blocks.extend(_alert_block(n) for n in shown)
    context = []
    if len(batch) > len(shown):
        context.append(f"and {len(batch) - len(shown)} more")
    if config.external_url:
        context.append(f"<{config.external_url}|revopipe>")
    if context:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]}
        )
    payload: dict[str, Any] = {
        # `text` is the notification/fallback line; the attachment carries the colour bar.
        "text": title,
        "attachments": [{"color": COLOURS[status], "fallback": title, "blocks": blocks}],
    }
    for key in ("channel", "username", "icon_emoji"):
        value = getattr(config, key)
        if value:
            payload[key] = value
    return payload


class SlackChannel(Channel):
    type_name: ClassVar[str] = "slack"
    description: ClassVar[str] = "Slack incoming webhook, one message per group (Block Kit)"
    Config = SlackConfig
    config: SlackConfig

    async def send(self, batch: Sequence[Notification]) -> Delivery:
        if not self.config.send_resolved:
            batch = [n for n in batch if n.status != "resolved"]
        if not batch:
            return Delivery.delivered()
        url = self.config.webhook_url.get_secret_value()
        try:
            response = await self.client.post(url, json=slack_payload(batch, self.config))
        except httpx.HTTPError as exc:
            result = Delivery.retry(
                f"channel {self.name!r}: cannot reach the Slack webhook: "
                f"{type(exc).__name__}: {exc}"
            )
        else:
            result = delivery_from_response(self.name, response)
        return _redacted(result, url)


def _redacted(delivery: Delivery, secret: str) -> Delivery:
    # The webhook URL is the credential; reasons end up in logs and the outbox.
    if secret and secret in delivery.reason:
        reason = delivery.reason.replace(secret, "<webhook_url>")
        return Delivery(delivery.outcome, reason, delivery.retry_after)
    return delivery
