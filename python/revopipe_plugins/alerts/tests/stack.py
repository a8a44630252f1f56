"""A whole alerting setup on loopback for the end-to-end tests: a pipeline fed through a
real `http` source, and a real webhook receiver that records what reaches it and can be
told to refuse."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import tomli_w
from aiohttp import web

from revopipe_plugins.alerts.tests.receiver import serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    """Webhook messages by path (one path per channel), in arrival order."""

    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refused: int = 0
    refuse_until: float = 0.0  # time.monotonic(): answer 503 before this
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        if time.monotonic() < self.refuse_until:
            self.refused += 1
            return web.Response(status=503, headers={"Retry-After": "1"})
        body = await request.json()
        self.messages.setdefault(request.match_info["channel"], []).append(body)
        return web.Response(text="ok")

    def alerts(self, channel: str = "hook") -> list[dict[str, Any]]:
        return [a for m in self.messages.get(channel, []) for a in m["alerts"]]

    def keys(self, channel: str = "hook") -> list[tuple[str, str, str]]:
        """(fingerprint, status, startsAt) of every alert received: what identifies one
        notification (its dedup key) in Alertmanager's payload."""
        return [(a["fingerprint"], a["status"], a["startsAt"]) for a in self.alerts(channel)]

    async def wait_for(self, n: int, channel: str = "hook", timeout: float = 20.0) -> None:
        with anyio.fail_after(timeout):
            while len(self.alerts(channel)) < n:
                await anyio.sleep(0.02)


@asynccontextmanager
async def receiver(port: int = 0) -> AsyncIterator[Receiver]:
    r = Receiver()
    async with serve("POST", "/{channel}", r.handle, port=port) as url:
        r.url = url
        yield r


def config(
    data_dir: str,
    ingest_port: int,
    webhook: str,
    rules: list[dict[str, Any]],
    route: dict[str, Any] | None = None,
    channels: tuple[str, ...] = ("hook",),
    api: bool = True,
    **alerts: Any,
) -> dict[str, Any]:
    """A pipeline `http source -> alerts -> blackhole` with one webhook channel per name in
    `channels` (posting to `{webhook}/{name}`)."""
    table: dict[str, Any] = {
        "type": "alerts",
        "inputs": ["in"],
        "default_rules": False,
        "evaluate_every": "100ms",
        "rules": rules,
        "channels": {c: {"type": "webhook", "url": f"{webhook}/{c}"} for c in channels},
        "route": route or {"channel": channels[0], "group_wait": "0s", "group_interval": "200ms"},
        "outbox_backoff": "200ms",
        "outbox_backoff_max": "1s",
        **alerts,
    }
    settings: dict[str, Any] = {"data_dir": data_dir, "drain_timeout": "10s"}
    if api:
        settings["api"] = "127.0.0.1:0"
    return {
        "pipeline": settings,
        "sources": {"in": {"type": "http", "address": f"127.0.0.1:{ingest_port}"}},
        "processors": {"alerts": table},
        "sinks": {"out": {"type": "blackhole", "inputs": ["alerts"]}},
    }


def to_toml(cfg: dict[str, Any]) -> str:
    return tomli_w.dumps(cfg)


async def push(port: int, *lines: dict[str, Any]) -> None:
    """POST JSON lines to the `http` source, waiting for it to listen first."""
    body = "".join(json.dumps(line) + "\n" for line in lines)
    async with httpx.AsyncClient(trust_env=False) as client:
        with anyio.fail_after(20):
            while True:
                try:
                    r = await client.post(f"http://127.0.0.1:{port}/ingest", content=body)
                except httpx.ConnectError:
                    await anyio.sleep(0.05)
                    continue
                assert r.status_code == 200, r.text
                return


def gauge(name: str, value: float, **tags: str) -> dict[str, Any]:
    return {"name": name, "value": value, "tags": tags}
