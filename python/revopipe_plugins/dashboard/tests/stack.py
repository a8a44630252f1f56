"""A pipeline with a dashboard on loopback for the tests: fed through a real `http`
source, with a real `alerts` processor and a real `sqlite` history."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from revopipe.plugins import Registry
from revopipe.runtime.pipeline import Pipeline

QUEUE_HIGH = {"name": "queue_high", "expr": "value(queue.depth) > 10", "severity": "critical"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gauge(name: str, value: float, **tags: str) -> dict[str, Any]:
    return {"name": name, "value": value, "tags": tags}


def config(
    data_dir: Path,
    ingest_port: int,
    dashboard: dict[str, Any] | None = None,
    rules: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`http -> alerts -> {dashboard, sqlite history}`."""
    dash: dict[str, Any] = {
        "type": "dashboard",
        "inputs": ["alerts"],
        "listen": "127.0.0.1:0",
        "history": "history",
        "refresh": "200ms",
        **(dashboard or {}),
    }
    return {
        "pipeline": {"data_dir": str(data_dir), "drain_timeout": "10s"},
        "sources": {"in": {"type": "http", "address": f"127.0.0.1:{ingest_port}"}},
        "processors": {
            "alerts": {
                "type": "alerts",
                "inputs": ["in"],
                "default_rules": False,
                "evaluate_every": "100ms",
                "rules": rules if rules is not None else [QUEUE_HIGH],
            }
        },
        "sinks": {
            "dash": dash,
            "history": {"type": "sqlite", "inputs": ["in"]},
        },
    }


@dataclass
class Stack:
    pipeline: Pipeline
    url: str
    ingest: int
    client: httpx.AsyncClient

    async def push(self, *lines: dict[str, Any]) -> None:
        body = "".join(json.dumps(line) + "\n" for line in lines)
        with anyio.fail_after(20):
            while True:
                try:
                    r = await self.client.post(
                        f"http://127.0.0.1:{self.ingest}/ingest", content=body
                    )
                except httpx.ConnectError:
                    await anyio.sleep(0.05)
                    continue
                assert r.status_code == 200, r.text
                return

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(self.url + path, **kw)

    async def widget(self, wid: str, **params: str) -> dict[str, Any]:
        r = await self.get(f"/api/widgets/{wid}", params=params)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["data"]
        return data

    async def wait_widget(self, wid: str, ok: Any, timeout: float = 20.0) -> dict[str, Any]:
        """The widget's data once `ok(data)` holds."""
        with anyio.fail_after(timeout):
            while True:
                data = await self.widget(wid)
                if ok(data):
                    return data
                await anyio.sleep(0.05)

    async def csrf(self) -> str:
        r = await self.get("/api/widgets")
        token: str = r.json()["csrf_token"]
        return token


async def dashboard_url(data_dir: Path, name: str = "dash") -> str:
    record = data_dir / "dashboard" / f"{name}.json"
    with anyio.fail_after(20):
        while not record.exists():
            await anyio.sleep(0.02)
    url: str = json.loads(record.read_text())["url"]
    return url


@asynccontextmanager
async def stack(
    tmp_path: Path,
    dashboard: dict[str, Any] | None = None,
    rules: list[dict[str, Any]] | None = None,
    registry: Registry | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    port = free_port()
    cfg = config(tmp_path, port, dashboard, rules)
    if env is not None:
        import tomli_w

        p = Pipeline.from_toml(tomli_w.dumps(cfg), env=env, registry=registry)
    else:
        p = Pipeline.from_dict(cfg, registry=registry)
    async with p.running(), httpx.AsyncClient(trust_env=False, timeout=20) as client:
        url = await dashboard_url(tmp_path)
        try:
            yield Stack(p, url, port, client)
        finally:
            p.stop()
