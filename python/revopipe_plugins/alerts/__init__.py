"""Streaming alerting: rules, lifecycle, routing and notification channels."""

from __future__ import annotations

from collections.abc import Sequence

import click

from revopipe.components import ComponentClass
from revopipe.notify import Channel
from revopipe.plugins import hookimpl
from revopipe_plugins.alerts.cli import alerts as alerts_cli
from revopipe_plugins.alerts.notify import (
    AlertmanagerChannel,
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
    SmsChannel,
    WebhookChannel,
)
from revopipe_plugins.alerts.processor import AlertsProcessor


@hookimpl
def revopipe_register_commands(cli: click.Group) -> None:
    cli.add_command(alerts_cli)


@hookimpl
def revopipe_component_types() -> Sequence[ComponentClass]:
    return [AlertsProcessor]


@hookimpl
def revopipe_notification_channels() -> Sequence[type[Channel]]:
    return [
        WebhookChannel,
        SlackChannel,
        PagerDutyChannel,
        EmailChannel,
        AlertmanagerChannel,
        SmsChannel,
    ]
