"""The webhook channel against a real loopback HTTP receiver: Alertmanager's webhook payload
(version "4", https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)
field by field, and how each kind of answer maps to a delivery outcome."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from revopipe_plugins.alerts.notify import (
    Delivery,
    Notification,
    WebhookChannel,
    parse_retry_after,
)
from revopipe_plugins.alerts.notify.webhook import idempotency_key, rfc3339
from revopipe_plugins.alerts.tests.receiver import serve

Behave = Callable[[dict[str, Any]], web.Response]


@asynccontextmanager
async def receiver(behave: Behave | None = None) -> AsyncIterator[tuple[str, list[Any]]]:
    got: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        got.append((request.method, dict(request.headers), body))
        return behave(body) if behave else web.Response(text="ok")

    async with serve("*", "/hook", handle) as base:
        yield f"{base}/hook", got


T0 = 1_700_000_000_123_456_789


def note(fp: str, status: str = "firing", **kw: Any) -> Notification:
    labels = {"instance": kw.pop("instance", "web-1"), "job": "api", "env": "prod"}
    return Notification(
        dedup_key=f"{fp}:{status}",
        status=status,  # type: ignore[arg-type]
        alert_name=kw.pop("alert_name", "high_cpu_usage"),
        severity=kw.pop("severity", "warning"),
        fingerprint=fp,
        group_key="alertname=high_cpu_usage,env=prod",
        starts_at_ns=T0,
        ends_at_ns=kw.pop("ends_at_ns", 0),
        labels=labels,
        annotations=kw.pop("annotations", {"summary": "CPU high", "description": f"{fp} is busy"}),
        generator_url=kw.pop("generator_url", "http://revopipe.local/rules/high_cpu_usage"),
    )


@pytest.mark.anyio
async def test_payload_matches_alertmanager_v4_field_by_field():
    async with receiver() as (url, got):
        channel = WebhookChannel(
            "team-a",
            {
                "type": "webhook",
                "url": url,
                "external_url": "http://revopipe.local:8686",
                "headers": {"X-Token": "s3cret"},
            },
        )
        batch = [note("aaa"), note("bbb", "resolved", instance="web-2", ends_at_ns=T0 + 5)]
        result = await channel.send(batch)
        await channel.aclose()

    assert result == Delivery.delivered()
    assert len(got) == 1
    method, headers, body = got[0]
    assert method == "POST"
    assert headers["Content-Type"].startswith("application/json")
    assert headers["X-Token"] == "s3cret"
    assert headers["Idempotency-Key"] == idempotency_key(batch)
    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert body["version"] == "4"
    assert body["groupKey"] == "alertname=high_cpu_usage,env=prod"
    assert body["truncatedAlerts"] == 0
    assert body["status"] == "firing"  # at least one alert of the group still fires
    assert body["receiver"] == "team-a"
    assert body["groupLabels"] == {"alertname": "high_cpu_usage", "env": "prod"}
    assert body["commonLabels"] == {
        "alertname": "high_cpu_usage",
        "env": "prod",
        "job": "api",
        "severity": "warning",
    }
    assert body["commonAnnotations"] == {"summary": "CPU high"}
    assert body["externalURL"] == "http://revopipe.local:8686"
    first, second = body["alerts"]
    assert first == {
        "status": "firing",
        "labels": {
            "alertname": "high_cpu_usage",
            "instance": "web-1",
            "job": "api",
            "env": "prod",
            "severity": "warning",
        },
        "annotations": {"summary": "CPU high", "description": "aaa is busy"},
        "startsAt": "2023-11-14T22:13:20.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://revopipe.local/rules/high_cpu_usage",
        "fingerprint": "aaa",
    }
    assert second["status"] == "resolved"
    assert second["labels"]["instance"] == "web-2"
    assert second["endsAt"] == "2023-11-14T22:13:20.123456794Z"
    assert second["fingerprint"] == "bbb"
    # Timestamps are RFC 3339 that a strict parser accepts.
    assert datetime.fromisoformat(first["startsAt"][:26] + "+00:00").tzinfo is not None


@pytest.mark.anyio
async def test_all_resolved_group_and_truncation():
    async with receiver() as (url, got):
        channel = WebhookChannel("r", {"type": "webhook", "url": url, "max_alerts": 2})
        batch = [note(f"f{i}", "resolved", instance=f"web-{i}") for i in range(5)]
        assert (await channel.send(batch)).outcome == "delivered"
        await channel.aclose()
    body = got[0][2]
    assert body["status"] == "resolved"
    assert len(body["alerts"]) == 2
    assert body["truncatedAlerts"] == 3
    assert "instance" not in body["commonLabels"]


@pytest.mark.anyio
async def test_acknowledgements_are_skipped_unless_asked_for():
    async with receiver() as (url, got):
        quiet = WebhookChannel("q", {"type": "webhook", "url": url})
        assert (await quiet.send([note("a", "acknowledged")])).outcome == "delivered"
        assert got == []
        loud = WebhookChannel("l", {"type": "webhook", "url": url, "send_acknowledged": True})
        assert (await loud.send([note("a", "acknowledged")])).outcome == "delivered"
        await quiet.aclose()
        await loud.aclose()
    alert = got[0][2]["alerts"][0]
    assert alert["status"] == "firing"
    assert alert["annotations"]["acknowledged"] == "true"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "headers", "outcome", "retry_after"),
    [
        (200, {}, "delivered", None),
        (204, {}, "delivered", None),
        (503, {}, "retry", None),
        (500, {"Retry-After": "12"}, "retry", 12.0),
        (429, {"Retry-After": "3"}, "retry", 3.0),
        (429, {"Retry-After": "soon"}, "retry", None),
        (408, {}, "retry", None),
        (400, {}, "failed", None),
        (404, {}, "failed", None),
        (401, {}, "failed", None),
    ],
)
async def test_http_status_maps_to_delivery(status, headers, outcome, retry_after):
    async with receiver(lambda _b: web.Response(status=status, headers=headers)) as (url, _):
        channel = WebhookChannel("w", {"type": "webhook", "url": url})
        result = await channel.send([note("x")])
        await channel.aclose()
    assert result.outcome == outcome
    assert result.retry_after == retry_after
    if outcome != "delivered":
        assert f"HTTP {status}" in result.reason
        assert "'w'" in result.reason


@pytest.mark.anyio
async def test_receiver_down_is_retried_with_a_clear_reason():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = WebhookChannel("down", {"type": "webhook", "url": f"http://127.0.0.1:{port}/x"})
    result = await channel.send([note("x")])
    await channel.aclose()
    assert result.outcome == "retry"
    assert "cannot reach" in result.reason and str(port) in result.reason


def test_bad_config_names_the_channel_and_key():
    with pytest.raises(ValueError, match=r"channel 'pager' \(webhook\).*url"):
        WebhookChannel("pager", {"type": "webhook"})
    with pytest.raises(ValueError, match="max_alert"):
        WebhookChannel("pager", {"type": "webhook", "url": "http://x", "max_alert": 1})


def test_notification_rejects_bad_status_and_round_trips():
    with pytest.raises(ValueError, match="status 'open'"):
        note("x", "open")
    n = note("x")
    assert Notification.from_json(n.to_json()) == n
    with pytest.raises(TypeError):
        n.labels["job"] = "other"  # type: ignore[index]


def test_rfc3339_zero_and_nanoseconds():
    assert rfc3339(0) == "0001-01-01T00:00:00Z"
    assert rfc3339(1_000_000_001) == "1970-01-01T00:00:01.000000001Z"


@given(st.integers(min_value=0, max_value=10**9))
def test_retry_after_delta_seconds(n):
    assert parse_retry_after(str(n)) == float(n)
    assert parse_retry_after(f"  {n} ") == float(n)


@given(st.integers(min_value=-86400, max_value=86400))
def test_retry_after_http_date(offset):
    now = 1_700_000_000.0
    when = datetime.fromtimestamp(now, UTC) + timedelta(seconds=offset)
    text = when.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(text, now=now) == max(0.0, float(offset))


@given(st.text())
def test_retry_after_never_raises(text):
    value = parse_retry_after(text, now=0.0)
    assert value is None or value >= 0.0
