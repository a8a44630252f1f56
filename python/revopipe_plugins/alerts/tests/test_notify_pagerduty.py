"""The pagerduty channel against a loopback stand-in for the Events API v2 enqueue endpoint,
checked field by field against the public spec
(https://developer.pagerduty.com/docs/events-API-v2/trigger-events/): one event per
notification, trigger/acknowledge/resolve sharing a dedup_key, severities mapped onto the
four allowed values, 202 delivered, 400 failed, 429 retried."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
from aiohttp import web

from revopipe_plugins.alerts.notify import Notification, PagerDutyChannel
from revopipe_plugins.alerts.notify.pagerduty import pd_severity
from revopipe_plugins.alerts.tests.receiver import serve

Behave = Callable[[dict[str, Any]], web.Response]
KEY = "R0UTINGKEY0123456789abcdef012345"
T0 = 1_700_000_000_123_456_789


def accepted(body: dict[str, Any]) -> web.Response:
    return web.json_response(
        {"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]},
        status=202,
    )


@asynccontextmanager
async def receiver(behave: Behave = accepted) -> AsyncIterator[tuple[str, list[Any]]]:
    got: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        got.append((dict(request.headers), body))
        return behave(body)

    async with serve("POST", "/v2/enqueue", handle) as base:
        yield f"{base}/v2/enqueue", got


def note(status: str = "firing", severity: str = "critical", **kw: Any) -> Notification:
    return Notification(
        dedup_key=f"fp1:{status}",
        status=status,  # type: ignore[arg-type]
        alert_name="service_down",
        severity=severity,
        fingerprint="fp1",
        group_key="alertname=service_down",
        starts_at_ns=T0,
        ends_at_ns=kw.pop("ends_at_ns", 0),
        labels=kw.pop("labels", {"instance": "db-1", "job": "postgres"}),
        annotations={"summary": "db-1 is down", "description": "no heartbeat for 60 s"},
        generator_url="http://revopipe.local/rules/service_down",
    )


def channel(url: str, **extra: Any) -> PagerDutyChannel:
    return PagerDutyChannel("pd", {"type": "pagerduty", "routing_key": KEY, "url": url, **extra})


@pytest.mark.anyio
async def test_trigger_event_field_by_field():
    async with receiver() as (url, got):
        pd = channel(url, client_url="http://revopipe.local:8686")
        assert (await pd.send([note()])).outcome == "delivered"
        await pd.aclose()
    headers, event = got[0]
    assert headers["Content-Type"].startswith("application/json")
    assert set(event) == {
        "routing_key",
        "event_action",
        "dedup_key",
        "client",
        "client_url",
        "links",
        "payload",
    }
    assert event["routing_key"] == KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "fp1"
    assert event["client"] == "revopipe"
    assert event["client_url"] == "http://revopipe.local:8686"
    assert event["links"] == [
        {"href": "http://revopipe.local/rules/service_down", "text": "service_down"}
    ]
    payload = event["payload"]
    # Required by the spec for a trigger: summary, source, severity.
    assert payload["summary"] == "db-1 is down"
    assert payload["source"] == "db-1"
    assert payload["severity"] == "critical"
    assert payload["timestamp"] == "2023-11-14T22:13:20.123456789Z"
    assert datetime.fromisoformat(payload["timestamp"][:26] + "+00:00")
    assert payload["class"] == "service_down"
    assert payload["group"] == "postgres"
    assert payload["custom_details"] == {
        "status": "firing",
        "severity": "critical",
        "labels": {"alertname": "service_down", "instance": "db-1", "job": "postgres"},
        "annotations": {"summary": "db-1 is down", "description": "no heartbeat for 60 s"},
        "notification_key": "fp1:firing",
    }


@pytest.mark.anyio
async def test_one_event_per_notification_with_lifecycle_actions_sharing_dedup_key():
    async with receiver() as (url, got):
        pd = channel(url)
        batch = [note(), note("acknowledged"), note("resolved", ends_at_ns=T0 + 1)]
        assert (await pd.send(batch)).outcome == "delivered"
        await pd.aclose()
    events = [body for _, body in got]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {"fp1"}
    assert events[2]["payload"]["timestamp"] == "2023-11-14T22:13:20.123456790Z"


@pytest.mark.anyio
async def test_source_falls_back_to_config_then_revopipe():
    async with receiver() as (url, got):
        pd = channel(url, source="edge-gw")
        await pd.send([note(labels={"job": "x"})])
        bare = channel(url)
        await bare.send([note(labels={})])
        await pd.aclose()
        await bare.aclose()
    assert got[0][1]["payload"]["source"] == "edge-gw"
    assert got[1][1]["payload"]["source"] == "revopipe"
    assert "group" not in got[1][1]["payload"]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("critical", "critical"),
        ("CRITICAL", "critical"),
        ("error", "error"),
        ("warning", "warning"),
        ("info", "info"),
        ("none", "info"),
        ("whatever", "error"),
    ],
)
def test_severity_mapping(ours, theirs):
    assert pd_severity(ours) == theirs


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "headers", "outcome", "retry_after"),
    [
        (202, {}, "delivered", None),
        (429, {"Retry-After": "30"}, "retry", 30.0),
        (500, {}, "retry", None),
        (400, {}, "failed", None),
    ],
)
async def test_answers_map_to_delivery(status, headers, outcome, retry_after):
    def behave(_b: dict[str, Any]) -> web.Response:
        return web.json_response({"status": "x"}, status=status, headers=headers)

    async with receiver(behave) as (url, got):
        pd = channel(url)
        result = await pd.send([note(), note("resolved")])
        await pd.aclose()
    assert result.outcome == outcome
    assert result.retry_after == retry_after
    # A refused event stops the batch so events stay in order on the retry.
    assert len(got) == (2 if outcome == "delivered" else 1)


@pytest.mark.anyio
async def test_endpoint_down_is_retried():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pd = channel(f"http://127.0.0.1:{port}/v2/enqueue")
    result = await pd.send([note()])
    await pd.aclose()
    assert result.outcome == "retry"
    assert "cannot reach" in result.reason


def test_config_hides_routing_key_and_checks_severity():
    pd = channel("http://x")
    assert KEY not in repr(pd.config)
    assert pd.config.url == "http://x"
    assert PagerDutyChannel("p", {"type": "pagerduty", "routing_key": "k"}).config.url == (
        "https://events.pagerduty.com/v2/enqueue"
    )
    with pytest.raises(ValueError, match=r"channel 'p' \(pagerduty\).*routing_key"):
        PagerDutyChannel("p", {"type": "pagerduty"})
    with pytest.raises(ValueError, match="default_severity"):
        PagerDutyChannel("p", {"type": "pagerduty", "routing_key": "k", "default_severity": "x"})
