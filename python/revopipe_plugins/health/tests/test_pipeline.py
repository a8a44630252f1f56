"""The `health` processor in a real pipeline, fed by a real `prometheus_scrape` of a loopback
HTTP server that goes away mid-test, read through the control API (`/healthz`, `/readyz`,
`/api/v1/health`) and `Pipeline.health()`."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from aiohttp import web

from revopipe.events import HealthStatus
from revopipe.runtime.pipeline import Pipeline

pytestmark = pytest.mark.anyio

WAIT = 60.0  # generous: the machine is shared and slow; nothing here asserts a timing


async def metrics(_: web.Request) -> web.Response:
    return web.Response(text="# TYPE app_requests_total counter\napp_requests_total 5\n")


async def serve(port: int = 0) -> web.AppRunner:
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner


async def until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    with anyio.fail_after(WAIT):
        while not await check():
            await anyio.sleep(0.05)
    del what  # named only so a timeout's traceback says what was awaited


def pipeline(tmp_path: Path, url: str) -> Pipeline:
    return Pipeline.from_dict(
        {
            "pipeline": {"data_dir": str(tmp_path), "api": "127.0.0.1:0"},
            "sources": {
                "scrape": {
                    "type": "prometheus_scrape",
                    "targets": [url],
                    "interval": "1s",
                    "timeout": "1s",
                    "job": "api",
                }
            },
            "processors": {
                "health": {
                    "type": "health",
                    "inputs": ["scrape"],
                    "evaluate_every": "100ms",
                    "services": [
                        {
                            "name": "api",
                            "match": {"job": "api"},
                            "unhealthy_when": "value(up) == 0",
                            "stale_after": "30s",
                        },
                        {
                            "name": "ghost",
                            "match": {"job": "ghost"},
                            "stale_after": "1s",
                            "required": False,
                        },
                    ],
                }
            },
            "sinks": {"out": {"type": "jsonl", "inputs": ["health"], "path": "out.jsonl"}},
        }
    )


async def test_a_scraped_service_goes_down_and_comes_back(tmp_path: Path) -> None:
    server = await serve()
    port = server.addresses[0][1]
    url = f"http://127.0.0.1:{port}/metrics"
    pipe = pipeline(tmp_path, url)
    try:
        async with pipe.running(), httpx.AsyncClient(timeout=10) as http:
            assert pipe.api_url is not None
            base = pipe.api_url
            body: dict[str, Any] = {}

            async def service_is(name: str, status: str) -> bool:
                nonlocal body
                body = (await http.get(f"{base}/api/v1/health")).json()
                return bool(body["services"].get(name, {}).get("health") == status)

            # up: api healthy; the optional ghost never reports, so it is unhealthy after
            # its 1s stale_after, which degrades the whole without making it unready
            await until("api healthy", lambda: service_is("api", "healthy"))
            await until("ghost stale", lambda: service_is("ghost", "unhealthy"))
            health = await http.get(f"{base}/api/v1/health")
            assert health.status_code == 200
            body = health.json()
            assert body["status"] == "degraded"
            assert body["reason"] == "service:ghost: no data for 1s (none yet)"
            assert body["services"]["api"] == {
                "health": "healthy",
                "reason": "",
                "since": body["services"]["api"]["since"],
                "required": True,
                "component": "health",
            }
            assert body["services"]["ghost"]["required"] is False
            assert set(body["components"]) == {"scrape", "health", "out"}
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "health": "degraded", "reasons": []}
            live = await http.get(f"{base}/healthz")
            assert live.status_code == 200 and live.json()["status"] == "alive"
            assert live.json()["uptime"] > 0

            # the target goes away: up == 0, so the required service and the whole are
            # unhealthy, and the pipeline is not ready; it is still alive
            await server.cleanup()
            await until("api unhealthy", lambda: service_is("api", "unhealthy"))
            expected = (
                f'unhealthy_when value(up) == 0 holds for {{instance="127.0.0.1:{port}", '
                'job="api"}'
            )
            health = await http.get(f"{base}/api/v1/health")
            assert health.status_code == 503
            body = health.json()
            assert body["status"] == "unhealthy" and body["ready"] is False
            assert body["services"]["api"]["reason"] == expected
            assert body["reason"] == f"service:api: {expected}"
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "not ready",
                "health": "unhealthy",
                "reasons": [f"unhealthy: service:api: {expected}"],
            }
            assert (await http.get(f"{base}/healthz")).status_code == 200
            # the same answer in process, for the dashboard
            overall = pipe.health().overall
            assert overall.status is HealthStatus.UNHEALTHY
            assert overall.culprits == ("service:api",)
            # the control action
            listed = await http.get(f"{base}/api/v1/components/health/control/services")
            assert listed.status_code == 200
            rows = {r["name"]: r for r in listed.json()["result"]}
            assert rows["api"]["status"] == "unhealthy" and rows["api"]["reason"] == expected
            assert rows["ghost"]["last_seen_seconds_ago"] is None

            # back: healthy and ready again
            server = await serve(port)
            await until("api healthy again", lambda: service_is("api", "healthy"))
            ready = await http.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
    finally:
        await server.cleanup()

    events = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    api = [e for e in events if e["type"] == "health" and e["subject"] == "service:api"]
    seen = [e["status"] for e in api]
    # (a first "degraded: no data yet" appears if a tick beat the first scrape)
    if seen and seen[0] == "degraded":
        seen = seen[1:]
    assert seen == ["healthy", "unhealthy", "healthy"]
    assert api[-2]["reason"] == expected
    gauges = [
        e["value"]
        for e in events
        if e["type"] == "metric"
        and e["name"] == "revopipe.service.health"
        and e["tags"] == {"service": "api"}
    ]
    assert 1.0 in gauges and 0.0 in gauges
    # the scraped rows passed through unchanged
    assert any(e["type"] == "metric" and e["name"] == "app_requests_total" for e in events)


async def test_not_ready_before_start(tmp_path: Path) -> None:
    pipe = pipeline(tmp_path, "http://127.0.0.1:9/metrics")
    before = pipe.health()
    assert not before.ready
    assert before.not_ready == ["the pipeline is not running (starting or stopped)"]
    # no live health processor yet: only components, all healthy
    assert before.services == [] and before.overall.status is HealthStatus.HEALTHY
