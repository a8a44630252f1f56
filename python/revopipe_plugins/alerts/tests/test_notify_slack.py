"""The slack channel against a real loopback receiver standing in for an incoming webhook:
the message follows Slack's incoming-webhook / Block Kit shapes
(https://api.slack.com/messaging/webhooks, https://api.slack.com/reference/block-kit/blocks)
field by field, 429 + Retry-After is retried, and the webhook URL never leaks into reasons."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from revopipe_plugins.alerts.notify import Notification, SlackChannel
from revopipe_plugins.alerts.tests.receiver import serve

Behave = Callable[[dict[str, Any]], web.Response]
SECRET_PATH = "/services/T000/B000/XXXXsecret"


@asynccontextmanager
async def receiver(behave: Behave | None = None) -> AsyncIterator[tuple[str, list[Any]]]:
    got: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        got.append((dict(request.headers), body))
        # Slack answers a good post with a plain "ok".
        return behave(body) if behave else web.Response(text="ok")

    async with serve("POST", SECRET_PATH, handle) as base:
        yield f"{base}{SECRET_PATH}", got


def note(fp: str, status: str = "firing", **kw: Any) -> Notification:
    return Notification(
        dedup_key=f"{fp}:{status}",
        status=status,  # type: ignore[arg-type]
        alert_name=kw.pop("alert_name", "high_cpu_usage"),
        severity=kw.pop("severity", "warning"),
        fingerprint=fp,
        group_key="alertname=high_cpu_usage",
        starts_at_ns=1_700_000_000_000_000_000,
        labels={"instance": fp, "env": "prod"},
        annotations={"summary": "CPU above 80 %", "description": f"{fp} at 93 %"},
        generator_url="http://revopipe.local/rules/high_cpu_usage",
    )


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


@pytest.mark.anyio
async def test_message_shape_field_by_field():
    async with receiver() as (url, got):
        channel = SlackChannel(
            "ops",
            {
                "type": "slack",
                "webhook_url": url,
                "channel": "#alerts",
                "username": "revopipe",
                "external_url": "http://revopipe.local:8686",
            },
        )
        result = await channel.send([note("web-1"), note("web-2", "resolved")])
        await channel.aclose()
    assert result.outcome == "delivered"
    headers, body = got[0]
    assert headers["Content-Type"].startswith("application/json")
    assert set(body) == {"text", "attachments", "channel", "username"}
    assert body["text"] == "[FIRING:1] high_cpu_usage"
    assert body["channel"] == "#alerts"
    assert body["username"] == "revopipe"
    (attachment,) = body["attachments"]
    assert set(attachment) == {"color", "fallback", "blocks"}
    assert attachment["color"] == "#d93025"
    assert attachment["fallback"] == body["text"]
    header, first, second, context = attachment["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[FIRING:1] high_cpu_usage"},
    }
    assert first["type"] == "section" and first["text"]["type"] == "mrkdwn"
    assert first["text"]["text"].splitlines() == [
        "*high_cpu_usage* (warning) — firing",
        "CPU above 80 %",
        "_web-1 at 93 %_",
        "`env=prod` `instance=web-1`",
        "<http://revopipe.local/rules/high_cpu_usage|source>",
    ]
    assert "resolved" in second["text"]["text"].splitlines()[0]
    assert context["type"] == "context"
    assert context["elements"] == [
        {"type": "mrkdwn", "text": "<http://revopipe.local:8686|revopipe>"}
    ]


@pytest.mark.anyio
async def test_resolved_group_is_green_and_can_be_skipped():
    async with receiver() as (url, got):
        channel = SlackChannel("ops", {"type": "slack", "webhook_url": url})
        assert (await channel.send([note("a", "resolved"), note("b", "resolved")])).outcome == (
            "delivered"
        )
        quiet = SlackChannel("q", {"type": "slack", "webhook_url": url, "send_resolved": False})
        assert (await quiet.send([note("a", "resolved")])).outcome == "delivered"
        await channel.aclose()
        await quiet.aclose()
    assert len(got) == 1
    body = got[0][1]
    assert body["text"] == "[RESOLVED:2] high_cpu_usage"
    assert body["attachments"][0]["color"] == "#2eb67d"
    assert set(body) == {"text", "attachments"}


@pytest.mark.anyio
async def test_acknowledged_is_amber_and_long_groups_are_capped():
    async with receiver() as (url, got):
        channel = SlackChannel("ops", {"type": "slack", "webhook_url": url})
        await channel.send([note(f"h{i}", "acknowledged") for i in range(60)])
        await channel.aclose()
    attachment = got[0][1]["attachments"][0]
    assert attachment["color"] == "#f2a900"
    # Slack refuses more than 50 blocks in a message.
    assert len(attachment["blocks"]) <= 50
    assert attachment["blocks"][-1]["elements"][0]["text"] == "and 20 more"
    assert all(len(t) <= 3000 for t in _texts(attachment["blocks"]))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "headers", "outcome", "retry_after"),
    [
        (429, {"Retry-After": "7"}, "retry", 7.0),
        (500, {}, "retry", None),
        (400, {}, "failed", None),  # invalid_payload
        (404, {}, "failed", None),  # no_service: the webhook was deleted
    ],
)
async def test_answers_map_to_delivery_without_leaking_the_url(
    status, headers, outcome, retry_after
):
    async with receiver(lambda _b: web.Response(status=status, headers=headers)) as (url, _):
        channel = SlackChannel("ops", {"type": "slack", "webhook_url": url})
        result = await channel.send([note("x")])
        await channel.aclose()
    assert result.outcome == outcome
    assert result.retry_after == retry_after
    assert f"HTTP {status}" in result.reason
    assert "secret" not in result.reason


@pytest.mark.anyio
async def test_receiver_down_is_retried():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = SlackChannel(
        "ops", {"type": "slack", "webhook_url": f"http://127.0.0.1:{port}{SECRET_PATH}"}
    )
    result = await channel.send([note("x")])
    await channel.aclose()
    assert result.outcome == "retry"
    assert "cannot reach the Slack webhook" in result.reason
    assert "secret" not in result.reason


def test_config_hides_the_url_and_names_missing_keys():
    channel = SlackChannel("ops", {"type": "slack", "webhook_url": "https://hooks/x/secret"})
    assert "secret" not in repr(channel.config)
    with pytest.raises(ValueError, match=r"channel 'ops' \(slack\).*webhook_url"):
        SlackChannel("ops", {"type": "slack"})
