"""Notification channels as a plugin hook: a third-party channel (the one in
docs/plugins.md) registers through the plugin manager, is found by type name and delivers
to a real receiver; clashes and unknown types are clear errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import ClassVar

import httpx
import pytest
from aiohttp import web
from pydantic import Field, SecretStr

import revopipe
from revopipe.notify import (
    Channel,
    ChannelConfig,
    Delivery,
    Notification,
    delivery_from_response,
)
from revopipe.plugins import PluginError, UnknownChannelType, build_registry
from tests.conftest import run_cli

# --- the example from docs/plugins.md, verbatim --------------------------------------


class NtfyConfig(ChannelConfig):
    url: str = Field(description="the topic URL, e.g. `https://ntfy.example.com/oncall`")
    token: SecretStr = Field(default=SecretStr(""), description="bearer token (secret)")
    priority: int = Field(default=3, ge=1, le=5, description="ntfy priority for firing alerts")


class NtfyChannel(Channel):
    type_name: ClassVar[str] = "ntfy"  # what users write in `type = "..."`
    Config = NtfyConfig
    description: ClassVar[str] = "push notifications to an ntfy topic"
    config: NtfyConfig

    async def send(self, batch: Sequence[Notification]) -> Delivery:
        lines = [f"[{n.status.upper()}] {n.alert_name} {n.summary}".rstrip() for n in batch]
        headers = {"Title": f"{len(batch)} alert(s)", "Priority": str(self.config.priority)}
        if token := self.config.token.get_secret_value():
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self.client.post(
                self.config.url, content="\n".join(lines), headers=headers
            )
        except httpx.HTTPError as exc:
            return Delivery.retry(f"channel {self.name!r}: cannot reach {self.config.url}: {exc}")
        return delivery_from_response(self.name, response)


class NtfyPlugin:
    @revopipe.hookimpl
    def revopipe_notification_channels(self) -> Sequence[type[Channel]]:
        return [NtfyChannel]


# --------------------------------------------------------------------------------------


def note(status: str = "firing", key: str = "k1") -> Notification:
    return Notification(
        dedup_key=key,
        status=status,  # type: ignore[arg-type]
        alert_name="api_down",
        severity="critical",
        fingerprint="fp",
        group_key="alertname=api_down",
        starts_at_ns=1,
        annotations={"summary": "api is down"},
    )


@asynccontextmanager
async def receiver(status: int, seen: list[tuple[dict[str, str], str]]) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.text()))
        return web.Response(status=status, text="nope" if status >= 400 else "ok")

    app = web.Application()
    app.router.add_post("/oncall", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/oncall"
    finally:
        await runner.cleanup()


@pytest.mark.anyio
async def test_thirdparty_channel_registers_and_delivers() -> None:
    registry = build_registry([("ntfy", NtfyPlugin())])
    assert "ntfy" in registry.channel_names()
    found = registry.channel_type("ntfy")
    assert found is not None and found.plugin == "ntfy"
    assert found.description == "push notifications to an ntfy topic"
    cls = registry.channel_class("ntfy")
    assert cls is NtfyChannel
    seen: list[tuple[dict[str, str], str]] = []
    async with receiver(200, seen) as url:
        channel = cls("phone", {"type": "ntfy", "url": url, "token": "t0k", "priority": 5})
        try:
            assert await channel.send([note()]) == Delivery.delivered()
        finally:
            await channel.aclose()
    [(headers, body)] = seen
    assert body == "[FIRING] api_down api is down"
    assert headers["Authorization"] == "Bearer t0k" and headers["Priority"] == "5"


@pytest.mark.anyio
async def test_thirdparty_channel_maps_refusals_and_an_unreachable_receiver() -> None:
    seen: list[tuple[dict[str, str], str]] = []
    async with receiver(503, seen) as url:
        channel = NtfyChannel("phone", {"type": "ntfy", "url": url})
        try:
            result = await channel.send([note()])
        finally:
            await channel.aclose()
    assert result.outcome == "retry" and "HTTP 503" in result.reason
    # The receiver is gone now: the same URL refuses connections.
    channel = NtfyChannel("phone", {"type": "ntfy", "url": url})
    try:
        result = await channel.send([note()])
    finally:
        await channel.aclose()
    assert result.outcome == "retry" and "cannot reach" in result.reason


def test_channel_config_is_validated_with_the_channel_named() -> None:
    with pytest.raises(ValueError, match=r"channel 'phone' \(ntfy\): invalid config: priority"):
        NtfyChannel("phone", {"type": "ntfy", "url": "http://x", "priority": 9})
    with pytest.raises(ValueError, match="urll"):
        NtfyChannel("phone", {"type": "ntfy", "urll": "http://x"})


def test_send_resolved_is_a_key_of_every_channel() -> None:
    loud = NtfyChannel("a", {"type": "ntfy", "url": "http://x"})
    quiet = NtfyChannel("b", {"type": "ntfy", "url": "http://x", "send_resolved": False})
    assert loud.config.send_resolved is True and quiet.config.send_resolved is False
    assert loud.wants(note("resolved")) and not quiet.wants(note("resolved"))
    assert quiet.wants(note("firing")) and quiet.wants(note("acknowledged"))


def test_duplicate_channel_type_names_both_plugins() -> None:
    with pytest.raises(PluginError) as err:
        build_registry([("ntfy", NtfyPlugin()), ("ntfy-fork", NtfyPlugin())])
    message = str(err.value)
    assert "'ntfy'" in message and "'ntfy-fork'" in message and "uninstall one" in message


def test_unknown_channel_type_lists_known_ones_and_the_fix() -> None:
    registry = build_registry([("ntfy", NtfyPlugin())])
    with pytest.raises(UnknownChannelType) as err:
        registry.channel_class("ntfyy", where="alerts channel 'phone'")
    message = str(err.value)
    assert message.startswith("alerts channel 'phone': unknown notification channel type")
    assert "did you mean 'ntfy'?" in message
    assert "ntfy" in message.split("known channel types:")[1]
    assert "install the plugin" in message


def test_a_hook_returning_a_non_channel_fails_naming_the_plugin() -> None:
    class Bad:
        @revopipe.hookimpl
        def revopipe_notification_channels(self) -> list[type]:
            return [dict]

    with pytest.raises(PluginError, match=r"plugin 'bad'.*not a subclass of revopipe\.notify"):
        build_registry([("bad", Bad())])


def test_builtin_channels_are_registered_by_the_alerts_plugin() -> None:
    registry = build_registry()
    for name in ("webhook", "slack", "pagerduty", "email", "alertmanager", "sms"):
        found = registry.channel_type(name)
        assert found is not None and found.plugin == "alerts", name


def test_plugins_command_lists_channels() -> None:
    r = run_cli("plugins")
    assert r.returncode == 0
    assert any(line.split()[:2] == ["channel", "webhook"] for line in r.stdout.splitlines())
    listed = {p["plugin"]: p for p in json.loads(run_cli("plugins", "--json").stdout)}
    assert {c["type"] for c in listed["alerts"]["channels"]} >= {"slack", "sms", "email"}
    assert listed["generate"]["channels"] == []
