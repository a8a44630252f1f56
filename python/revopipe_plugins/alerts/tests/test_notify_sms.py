"""The sms channel against a loopback stand-in for Twilio's Messages API
(https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource):
form-encoded To/From/Body to /2010-04-01/Accounts/{sid}/Messages.json with basic auth, one
message per recipient, the body capped at 1600 characters, and refusals mapped."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from revopipe_plugins.alerts.notify import Notification, SmsChannel
from revopipe_plugins.alerts.notify.sms import MAX_BODY, sms_body
from revopipe_plugins.alerts.tests.receiver import serve

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "t0ken-secret"
Behave = Callable[[int], web.Response]


def created(_index: int) -> web.Response:
    return web.json_response({"sid": "SM1", "status": "queued"}, status=201)


@asynccontextmanager
async def gateway(behave: Behave = created) -> AsyncIterator[tuple[str, list[Any]]]:
    got: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        got.append(
            (
                request.match_info["sid"],
                request.headers.get("Authorization", ""),
                request.content_type,
                {k: str(v) for k, v in form.items()},
            )
        )
        return behave(len(got))

    async with serve("POST", "/2010-04-01/Accounts/{sid}/Messages.json", handle) as base:
        yield f"{base}", got


def note(fp: str, status: str = "firing", summary: str = "db-1 is down") -> Notification:
    return Notification(
        dedup_key=f"{fp}:{status}",
        status=status,  # type: ignore[arg-type]
        alert_name="service_down",
        severity="critical",
        fingerprint=fp,
        group_key="alertname=service_down",
        starts_at_ns=1_700_000_000_000_000_000,
        labels={"instance": fp},
        annotations={"summary": summary},
    )


def channel(base_url: str, **extra: Any) -> SmsChannel:
    return SmsChannel(
        "pager",
        {
            "type": "sms",
            "account_sid": SID,
            "auth_token": TOKEN,
            "from": "+15550000001",
            "to": ["+15550000002", "+15550000003"],
            "base_url": base_url,
            **extra,
        },
    )


@pytest.mark.anyio
async def test_one_form_post_per_recipient_with_basic_auth():
    async with gateway() as (url, got):
        sms = channel(url + "/")
        result = await sms.send([note("db-1"), note("db-2", "resolved", "db-2 back")])
        await sms.aclose()
    assert result.outcome == "delivered", result.reason
    assert len(got) == 2
    expected_auth = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    body = "[FIRING:1] service_down\nfiring service_down @db-1: db-1 is down\n" + (
        "resolved service_down @db-2: db-2 back"
    )
    for (sid, auth, content_type, form), to in zip(
        got, ["+15550000002", "+15550000003"], strict=True
    ):
        assert sid == SID
        assert auth == expected_auth
        assert content_type == "application/x-www-form-urlencoded"
        assert form == {"To": to, "From": "+15550000001", "Body": body}


@pytest.mark.anyio
async def test_long_bodies_are_truncated_to_1600_characters():
    async with gateway() as (url, got):
        sms = channel(url, to=["+15550000002"])
        await sms.send([note(f"h{i}", summary="x" * 100) for i in range(40)])
        await sms.aclose()
    text = got[0][3]["Body"]
    assert len(text) == MAX_BODY
    assert text.endswith("…")


@pytest.mark.anyio
async def test_resolved_can_be_skipped():
    async with gateway() as (url, got):
        sms = channel(url, send_resolved=False)
        assert (await sms.send([note("a", "resolved")])).outcome == "delivered"
        await sms.aclose()
    assert got == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "headers", "outcome", "retry_after"),
    [
        (429, {"Retry-After": "4"}, "retry", 4.0),
        (503, {}, "retry", None),
        (400, {}, "failed", None),  # e.g. 21211 invalid 'To' number
        (401, {}, "failed", None),  # wrong sid/token
    ],
)
async def test_refusal_stops_at_the_failing_recipient(status, headers, outcome, retry_after):
    def behave(index: int) -> web.Response:
        if index == 1:
            return created(index)
        return web.json_response({"code": 20003}, status=status, headers=headers)

    async with gateway(behave) as (url, got):
        sms = channel(url)
        result = await sms.send([note("a")])
        await sms.aclose()
    assert result.outcome == outcome
    assert result.retry_after == retry_after
    assert f"HTTP {status}" in result.reason and "+15550000003" in result.reason
    assert TOKEN not in result.reason
    assert len(got) == 2


@pytest.mark.anyio
async def test_gateway_down_is_retried():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sms = channel(f"http://127.0.0.1:{port}")
    result = await sms.send([note("a")])
    await sms.aclose()
    assert result.outcome == "retry" and "cannot reach" in result.reason


def test_body_and_config_checks():
    assert sms_body([note("a", "resolved"), note("b", "resolved")]).startswith(
        "[RESOLVED:2] service_down\n"
    )
    with pytest.raises(ValueError, match=r"channel 'p' \(sms\).*to"):
        SmsChannel("p", {"type": "sms", "account_sid": SID, "auth_token": "t", "from": "+1"})
    sms = channel("http://x")
    assert TOKEN not in repr(sms.config)
    assert sms.config.messages_url == f"http://x/2010-04-01/Accounts/{SID}/Messages.json"
    default = SmsChannel(
        "p", {"type": "sms", "account_sid": SID, "auth_token": "t", "from": "+1", "to": ["+2"]}
    )
    assert default.config.messages_url.startswith("https://api.twilio.com/2010-04-01/")
