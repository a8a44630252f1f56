"""The dashboard in a running pipeline on loopback: widgets' JSON from real events, the
live stream, acting on alerts through the page's POSTs, and the security rules."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from revopipe.config.errors import ConfigInvalid
from revopipe.plugins import build_registry, hookimpl
from revopipe.runtime.pipeline import Pipeline
from revopipe.widgets import Widget, WidgetConfig
from revopipe_plugins.dashboard.tests.stack import Stack, config, free_port, gauge, stack

pytestmark = pytest.mark.anyio

SEVEN = ["system", "health", "alerts", "api", "errors", "trends", "recommendations"]


def http_windows(route: str, ok: float, errors: float, p99: float) -> list[dict[str, Any]]:
    """What an `aggregate` processor emits for one route's window."""
    base = "http.server.request.duration"
    tags = {"http.route": route, "http.request.method": "GET"}
    return [
        gauge(f"{base}.rate", ok, **tags, **{"http.response.status_class": "2xx"}),
        gauge(f"{base}.rate", errors, **tags, **{"http.response.status_class": "5xx"}),
        gauge(f"{base}.count", ok * 10, **tags, **{"http.response.status_class": "2xx"}),
        gauge(f"{base}.p50", p99 / 4, **tags, **{"http.response.status_class": "2xx"}),
        gauge(f"{base}.p95", p99 / 2, **tags, **{"http.response.status_class": "2xx"}),
        gauge(f"{base}.p99", p99, **tags, **{"http.response.status_class": "2xx"}),
    ]


async def test_the_seven_widgets_answer_json_from_real_events(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        layout = (await s.get("/api/widgets")).json()
        assert [w["id"] for w in layout["widgets"]] == SEVEN
        assert all(w["w"] >= 1 and w["h"] >= 1 for w in layout["widgets"])
        await s.push(
            gauge("system.cpu.utilization", 0.25),
            gauge("system.memory.utilization", 0.5, **{"system.memory.state": "used"}),
            gauge("system.filesystem.utilization", 0.75, mountpoint="/"),
            *http_windows("/orders", ok=40, errors=10, p99=0.2),
        )
        system = await s.wait_widget("system", lambda d: d["values"].get("CPU") == 25.0)
        assert system["values"] == {"CPU": 25.0, "Memory": 50.0, "Disk /": 75.0}
        assert system["cards"][0]["spark"]["y"] == [25.0]
        api = await s.wait_widget("api", lambda d: d["routes"])
        assert api["routes"] == [
            {"route": "/orders", "rate": 50.0, "p50": 50.0, "p95": 100.0, "p99": 200.0}
        ]
        assert api["figure"]["data"]
        errors = await s.widget("errors")
        (row,) = errors["routes"]
        assert row["route"] == "/orders" and row["2xx"] == 40 and row["5xx"] == 10
        assert row["error_ratio"] == 0.2
        health = await s.widget("health")
        assert health["status"] == "healthy"
        assert {r["name"] for r in health["subjects"]} == {"in", "alerts", "dash", "history"}
        recs = await s.widget("recommendations")
        assert recs["recommendations"] == [] and "optimizer" in recs["empty"]
        alerts = await s.widget("alerts")
        assert alerts["alerts"] == [] and alerts["component"] == "alerts"


async def test_trends_read_the_sqlite_history_for_each_range(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        await s.push(
            gauge("system.cpu.utilization", 0.3),
            gauge("system.cpu.utilization", 0.1, **{"cpu.mode": "user"}),
            gauge("system.memory.utilization", 0.5, **{"system.memory.state": "used"}),
            gauge("system.memory.utilization", 0.4, **{"system.memory.state": "free"}),
        )
        trends = await s.wait_widget("trends", lambda d: len(d["series"]) == 2, timeout=30)
        assert trends["range"] == "6h" and trends["ranges"] == ["1h", "6h", "24h", "7d"]
        # the defaults are the totals only: no per-mode CPU, only used memory
        assert [(x["name"], x["tags"]) for x in trends["series"]] == [
            ("system.cpu.utilization", {}),
            ("system.memory.utilization", {"system.memory.state": "used"}),
        ]
        assert trends["figure"]["data"][0]["y"][-1] == 0.3
        week = await s.widget("trends", range="7d")
        assert week["range"] == "7d" and week["step_seconds"] == 3600
        bad = await s.get("/api/widgets/trends", params={"range": "2w"})
        assert bad.status_code == 400 and "1h, 6h, 24h, 7d" in bad.json()["error"]


async def test_the_stream_delivers_an_update_after_new_data(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        await s.push(gauge("system.cpu.utilization", 0.1))
        await s.wait_widget("system", lambda d: d["values"].get("CPU") == 10.0)
        seen: list[dict[str, Any]] = []
        with anyio.fail_after(30):
            async with s.client.stream("GET", s.url + "/api/stream") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                pushed = False
                async for line in stream.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    msg = json.loads(line[6:])
                    seen.append(msg)
                    if msg["widget"] != "system":
                        continue
                    if msg["data"]["values"].get("CPU") == 90.0:
                        break
                    # the hub may still hold a state older than the GET above
                    if not pushed and msg["data"]["values"].get("CPU") == 10.0:
                        pushed = True
                        await s.push(gauge("system.cpu.utilization", 0.9))
        seqs = [m["seq"] for m in seen]
        assert len(set(seqs)) == len(seqs)
        last = [m for m in seen if m["widget"] == "system"][-1]
        assert last["data"]["cards"][0]["spark"]["y"][-2:] == [10.0, 90.0]


async def _firing(s: Stack) -> dict[str, Any]:
    await s.push(gauge("queue.depth", 50, q="a"))
    data = await s.wait_widget("alerts", lambda d: any(a["state"] == "firing" for a in d["alerts"]))
    alert: dict[str, Any] = data["alerts"][0]
    return alert


async def test_acknowledge_changes_the_alert_in_the_processor_and_sqlite(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        alert = await _firing(s)
        ack = next(a for a in alert["_actions"] if a["label"] == "Acknowledge")
        token = await s.csrf()
        r = await s.client.post(
            s.url + ack["post"],
            json={"by": "tester"},
            headers={"X-CSRF-Token": token, "Origin": s.url},
        )
        assert r.status_code == 200, r.text
        assert r.json()["result"]["acknowledged"] == [alert["fingerprint"]]
        listing = await s.pipeline.control("alerts", "list", {})
        (row,) = listing["alerts"]
        assert row["acked_by"] == "tester"
        after = await s.widget("alerts")
        assert after["alerts"][0]["acked_by"] == "tester"
        assert [a["label"] for a in after["alerts"][0]["_actions"]] == ["Silence 1h"]
    db = tmp_path / "alerts" / "alerts" / "history.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT kind, fingerprint, by FROM alert_history WHERE kind = 'ack'"
        ).fetchall()
    assert rows == [("ack", alert["fingerprint"], "tester")]


async def test_silence_from_the_page_reaches_the_alerts_processor(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        alert = await _firing(s)
        action = next(a for a in alert["_actions"] if a["label"] == "Silence 1h")
        r = await s.client.post(
            s.url + action["post"],
            json=action["body"],
            headers={"X-CSRF-Token": await s.csrf(), "Origin": s.url},
        )
        assert r.status_code == 200, r.text
        silences = (await s.pipeline.control("alerts", "silences", {}))["silences"]
        assert len(silences) == 1 and 'alertname="queue_high"' in silences[0]["matchers"]


async def test_posts_without_csrf_token_or_from_another_origin_are_refused(
    tmp_path: Path,
) -> None:
    async with stack(tmp_path) as s:
        alert = await _firing(s)
        path = f"/api/alerts/{alert['fingerprint']}/ack"
        token = await s.csrf()
        for headers in (
            {},
            {"X-CSRF-Token": "wrong"},
            {"X-CSRF-Token": token, "Origin": "http://evil.example"},
        ):
            r = await s.client.post(s.url + path, json={}, headers=headers)
            assert r.status_code == 403, (headers, r.text)
        r = await s.client.post(s.url + "/api/silences", json={"matchers": ['a="b"']})
        assert r.status_code == 403
        listing = await s.pipeline.control("alerts", "list", {})
        assert listing["alerts"][0]["acked_by"] is None
        # a GET cannot act either
        assert (await s.get(path)).status_code == 405


async def test_a_foreign_host_name_is_refused_on_loopback(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        r = await s.get("/api/widgets", headers={"Host": "attacker.example:8050"})
        assert r.status_code == 421


def test_a_remote_bind_without_a_token_does_not_validate(tmp_path: Path) -> None:
    cfg = config(tmp_path, free_port(), {"listen": "0.0.0.0:8050"})
    with pytest.raises(ConfigInvalid) as info:
        Pipeline.from_dict(cfg)
    text = str(info.value)
    assert "sinks.dash" in text and "`token`" in text and "127.0.0.1:8050" in text


def test_an_unknown_widget_type_names_the_closest(tmp_path: Path) -> None:
    cfg = config(tmp_path, free_port(), {"widgets": [{"type": "sytem"}]})
    with pytest.raises(ConfigInvalid) as info:
        Pipeline.from_dict(cfg)
    text = str(info.value)
    assert "unknown dashboard widget type 'sytem'" in text and "did you mean 'system'" in text


def test_widget_keys_are_checked(tmp_path: Path) -> None:
    bad = [
        ({"widgets": [{"type": "system", "w": 13}]}, "widgets[0] (system): w"),
        ({"widgets": [{"type": "system", "colour": "red"}]}, "colour"),
        ({"widgets": [{"type": "system", "x": 8, "w": 6}]}, "x + w at most 12"),
        ({"widgets": [{"type": "system"}, {"type": "system"}]}, "id 'system' is used"),
        ({"widgets": [{"type": "trends", "range": "1y"}]}, "'1y' is not one of 1h, 6h"),
        ({"widgets": [{"type": "trends", "series": ["a{b}"]}]}, "'b' is not one of"),
    ]
    for dash, needle in bad:
        with pytest.raises(ConfigInvalid) as info:
            Pipeline.from_dict(config(tmp_path, free_port(), dash))
        assert needle in str(info.value), str(info.value)


async def test_remote_bind_needs_the_token_and_the_link_sets_a_session(tmp_path: Path) -> None:
    token = "s3cret-token-0123456789"
    dash = {"listen": "0.0.0.0:0", "token": "${DASH_TOKEN}"}
    async with stack(tmp_path, dash, env={"DASH_TOKEN": token}) as s:
        assert (await s.get("/api/widgets")).status_code == 401
        assert (await s.get("/")).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert (await s.get("/api/widgets", headers=auth)).status_code == 200
        async with httpx.AsyncClient(trust_env=False) as browser:
            r = await browser.get(s.url + "/", params={"token": token})
            assert r.status_code == 303 and r.headers["location"] == "/"
            cookie = r.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and token not in cookie
            page = await browser.get(s.url + "/")
            assert page.status_code == 200 and token not in page.text
            assert (await browser.get(s.url + "/api/widgets/system")).status_code == 200
        assert (await s.get("/", params={"token": "wrong" * 5})).status_code == 401


async def test_secrets_never_appear_in_the_page_or_the_api(tmp_path: Path) -> None:
    secret = "hunter2-very-secret-value"
    token = "another-secret-token-42"
    dash = {"title": "ops ${TITLE_SECRET}", "token": "${DASH_TOKEN}"}
    env = {"TITLE_SECRET": secret, "DASH_TOKEN": token}
    async with stack(tmp_path, dash, env=env) as s:
        auth = {"Authorization": f"Bearer {token}"}
        s.client.headers.update(auth)
        # the secret also arrives as data: a tag value and an alert label
        await s.push(gauge("system.cpu.utilization", 0.5, leak=secret))
        await s.push(gauge("queue.depth", 50, q=secret))
        await s.wait_widget("alerts", lambda d: d["alerts"])
        bodies = [(await s.get("/")).text, (await s.get("/api/widgets")).text]
        for wid in SEVEN:
            bodies.append((await s.get(f"/api/widgets/{wid}")).text)
        bodies.append((await s.get("/healthz")).text)
        with anyio.fail_after(20):
            async with s.client.stream("GET", s.url + "/api/stream") as stream:
                async for line in stream.aiter_lines():
                    bodies.append(line)
                    if line.startswith("data: ") and '"widget":"alerts"' in line:
                        break
        for body in bodies:
            assert secret not in body and token not in body
        assert any("ops ***" in b or "ops ****" in b for b in bodies[:2]), bodies[1][:200]


async def test_healthz_reports_the_overall_status(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        r = await s.get("/healthz")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "healthy"
        assert {e["subject"] for e in body["subjects"]} >= {"component:dash", "component:alerts"}


class QueueWidget(Widget[WidgetConfig]):
    """A third-party widget: only the core API, no import of a built-in plugin."""

    type_name = "queues"
    title = "Queues"
    default_series = ("queue.depth",)

    async def data(self, params: Mapping[str, str]) -> dict[str, Any]:
        rows = [
            {"queue": s.tag_dict.get("q", ""), "depth": s.last}
            for s in self.source.series("queue.depth")
        ]
        return {
            "table": {
                "columns": [{"key": "queue", "label": "Queue"}, {"key": "depth", "label": "Depth"}],
                "rows": rows,
            }
        }


class QueuePlugin:
    @hookimpl
    def revopipe_dashboard_widgets(self) -> list[type]:
        return [QueueWidget]


async def test_a_plugin_contributes_a_widget_through_the_hook(tmp_path: Path) -> None:
    registry = build_registry([("queues", QueuePlugin())])
    assert registry.widget_class("queues") is QueueWidget
    dash = {"widgets": [{"type": "queues", "id": "q", "title": "My queues", "x": 0, "w": 6}]}
    async with stack(tmp_path, dash, rules=[], registry=registry) as s:
        layout = (await s.get("/api/widgets")).json()["widgets"]
        assert layout == [
            {
                "id": "q",
                "type": "queues",
                "title": "My queues",
                "x": 0,
                "y": 0,
                "w": 6,
                "h": 3,
                "refresh": 0.2,
                "series": ["queue.depth"],
                "url": "/api/widgets/q",
            }
        ]
        await s.push(gauge("queue.depth", 7, q="a"))
        data = await s.wait_widget("q", lambda d: d["table"]["rows"])
        assert data["table"]["rows"] == [{"queue": "a", "depth": 7.0}]
        assert (await s.get("/api/widgets/nope")).status_code == 404


async def test_the_page_and_its_offline_assets_are_served(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        page = await s.get("/")
        assert page.status_code == 200
        assert 'src="/static/plotly.min.js"' in page.text and "http" not in page.text.split(
            "<body>"
        )[0].replace("http-equiv", "")
        token = await s.csrf()
        assert f'content="{token}"' in page.text
        assert "revopipe_csrf=" in page.headers["set-cookie"]
        js = await s.get("/static/plotly.min.js")
        assert js.status_code == 200 and len(js.content) > 1_000_000
        assert (await s.get("/static/app.js")).status_code == 200
        assert (await s.get("/static/../sink.py")).status_code == 404
