"""Notification delivery: the channel interface, the durable SQLite outbox and built-in
channels. A library used by the alerting plugin; channels are plain classes so third-party
plugins can provide more through a hook."""

from revopipe_plugins.alerts.notify.channel import (
    Channel,
    ChannelConfig,
    Delivery,
    Notification,
    NotificationStatus,
    delivery_from_response,
    parse_retry_after,
)
from revopipe_plugins.alerts.notify.outbox import Outbox, OutboxCounts, backoff_delay
from revopipe_plugins.alerts.notify.webhook import WebhookChannel, WebhookConfig, webhook_payload

__all__ = [
    "Channel",
    "ChannelConfig",
    "Delivery",
    "Notification",
    "NotificationStatus",
    "Outbox",
    "OutboxCounts",
    "WebhookChannel",
    "WebhookConfig",
    "backoff_delay",
    "delivery_from_response",
    "parse_retry_after",
    "webhook_payload",
]
