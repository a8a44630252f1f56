"""Notification delivery: the durable SQLite outbox and the built-in channels. The channel
interface lives in the core (`revopipe.notify`) so third-party plugins can provide more
channels through the ``revopipe_notification_channels`` hook; it is re-exported here."""

from revopipe.notify import (
    Channel,
    ChannelConfig,
    Delivery,
    Notification,
    NotificationStatus,
    delivery_from_response,
    parse_retry_after,
)
from revopipe_plugins.alerts.notify.alertmanager import AlertmanagerChannel, AlertmanagerConfig
from revopipe_plugins.alerts.notify.email import EmailChannel, EmailConfig
from revopipe_plugins.alerts.notify.outbox import Outbox, OutboxCounts, backoff_delay
from revopipe_plugins.alerts.notify.pagerduty import PagerDutyChannel, PagerDutyConfig
from revopipe_plugins.alerts.notify.slack import SlackChannel, SlackConfig
from revopipe_plugins.alerts.notify.sms import SmsChannel, SmsConfig
from revopipe_plugins.alerts.notify.webhook import WebhookChannel, WebhookConfig, webhook_payload

__all__ = [
    "AlertmanagerChannel",
    "AlertmanagerConfig",
    "Channel",
    "ChannelConfig",
    "Delivery",
    "EmailChannel",
    "EmailConfig",
    "Notification",
    "NotificationStatus",
    "Outbox",
    "OutboxCounts",
    "PagerDutyChannel",
    "PagerDutyConfig",
    "SlackChannel",
    "SlackConfig",
    "SmsChannel",
    "SmsConfig",
    "WebhookChannel",
    "WebhookConfig",
    "backoff_delay",
    "delivery_from_response",
    "parse_retry_after",
    "webhook_payload",
]
