"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright).

A pipeline embedded in the test process feeds the dashboard from an `http` source the test
pushes JSON lines into, so every value shown is one the test chose: the page loads with
its seven widgets and no console errors, a pushed value is on screen within 2 s, the
Acknowledge button acknowledges the alert in the alerts processor and in its SQLite, a
POST without the CSRF token is refused, and a dashboard bound off loopback without a token
does not start. Screenshots land in `artifacts/dashboard-*.png` (see tests/e2e/browser.py).
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from revopipe.control import call_control
from revopipe.embed import PipelineHandle, embed
from tests.e2e.browser import (
    browser_fixture,  # noqa: F401  (the `browser` fixture)
    open_page,
    require_chromium,
    screenshot,
)

pytestmark = pytest.mark.slow

WIDGETS = ("system", "api", "errors", "health", "alerts", "trends", "recommendations")
ROUTES = ("/api/items/{item_id}", "/api/search", "/api/checkout")
LIVE_WITHIN = 2.0
"""Seconds from a value entering the pipeline to it being on screen (issue #8)."""
WAIT_MS = 15_000  # generous waits for what is not the measured latency: a busy 2-core box


@dataclass
class Stack:
    handle: PipelineHandle
    dashboard: str
    ingest: str
    api: str
    data_dir: Path

    def push(self, *lines: dict[str, Any]) -> None:
        """Send metric lines; the reply comes once the batch went downstream."""
        body = "\n".join(json.dumps(x) for x in lines) + "\n"
        r = httpx.post(
            self.ingest + "/ingest",
            content=body,
            headers={"Content-Type": "application/x-ndjson"},
            timeout=10,
        )
        r.raise_for_status()


def _config(data_dir: Path) -> dict[str, Any]:
    return {
        "pipeline": {"name": "browser-test", "data_dir": str(data_dir), "api": "127.0.0.1:0"},
        "sources": {"ingest": {"type": "http", "address": "127.0.0.1:0"}},
        "processors": {
            "alerts": {
                "type": "alerts",
                "inputs": ["ingest"],
                "default_rules": False,
                "evaluate_every": "0.25s",
                "rules": [
                    {
                        "name": "queue_backlog",
                        "expr": "value(test.queue.depth) > 100",
                        "for": "0s",
                        "severity": "warning",
                        "annotations": {"summary": "queue depth {{ $value }}"},
                    }
                ],
            },
            "health": {
                "type": "health",
                "inputs": ["alerts"],
                "services": [
                    {
                        "name": "api",
                        "degraded_when": "value(test.queue.depth) > 1000",
                        "required": False,
                    }
                ],
            },
        },
        "sinks": {
            "history": {"type": "sqlite", "inputs": ["health"]},
            "dash": {
                "type": "dashboard",
                "inputs": ["health"],
                "listen": "127.0.0.1:0",
                "history": "history",
                "alerts": "alerts",
                # `refresh` left at its default (1 s): the 2 s bound holds for what ships.
            },
        },
    }


def _wait(what: str, predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_chromium()  # no pipeline to start when the browser is missing
    data_dir = tmp_path_factory.mktemp("dashboard-browser")
    handle = embed(_config(data_dir))
    try:
        dash = _wait(
            "the dashboard", lambda: getattr(handle.pipeline.component("dash"), "url", None)
        )
        bound = _wait(
            "the ingest port", lambda: getattr(handle.pipeline.component("ingest"), "bound", None)
        )
        assert handle.api_url is not None
        s = Stack(
            handle, dash.rstrip("/"), f"http://{bound[0]}:{bound[1]}", handle.api_url, data_dir
        )
        s.push(*_baseline(0.12))
        yield s
    finally:
        handle.stop()


def _baseline(cpu: float) -> list[dict[str, Any]]:
    """One reading of everything the widgets show, as `system` and `aggregate` send it."""
    lines: list[dict[str, Any]] = [
        {"name": "system.cpu.utilization", "value": cpu, "unit": "1"},
        {
            "name": "system.memory.utilization",
            "value": 0.41,
            "unit": "1",
            "tags": {"system.memory.state": "used"},
        },
        {
            "name": "system.filesystem.utilization",
            "value": 0.33,
            "unit": "1",
            "tags": {"mountpoint": "/"},
        },
        {"name": "test.queue.depth", "value": 3},
    ]
    for i, route in enumerate(ROUTES):
        for cls, rate in (("2xx", 10.0 + i), ("5xx", 0.5 * i)):
            tags = {
                "http.route": route,
                "http.request.method": "GET",
                "http.response.status_class": cls,
            }
            lines.append(
                {
                    "name": "http.server.request.duration.rate",
                    "value": rate,
                    "unit": "1/s",
                    "tags": tags,
                }
            )
            lines.append(
                {"name": "http.server.request.duration.count", "value": rate * 5, "tags": tags}
            )
            for q, v in (("p50", 0.01), ("p95", 0.05), ("p99", 0.09)):
                lines.append(
                    {
                        "name": f"http.server.request.duration.{q}",
                        "value": v * (i + 1),
                        "unit": "s",
                        "tags": tags,
                    }
                )
    return lines


def _widget_text(page: Any, wid: str) -> str:
    return str(page.inner_text(f'[data-widget="{wid}"]'))


def test_page_loads_seven_widgets_and_updates_live(browser: Any, stack: Stack) -> None:
    page, errors = open_page(browser, stack.dashboard + "/")
    try:
        for wid in WIDGETS:
            page.wait_for_selector(f'[data-widget="{wid}"]', state="visible", timeout=WAIT_MS)
        # The data from the baseline push, through the live stream.
        page.wait_for_function(
            "() => document.querySelector('[data-widget=\"api\"]').innerText"
            ".includes('/api/search')",
            timeout=WAIT_MS,
        )
        screenshot(page, "loaded")
        # Each widget's JSON (what the page draws) answers without a widget error.
        for wid in WIDGETS:
            r = httpx.get(f"{stack.dashboard}/api/widgets/{wid}", timeout=10)
            assert r.status_code == 200, (wid, r.text)
            assert "error" not in r.json().get("data", {}), (wid, r.text)
        latencies = []
        for cpu in (0.4242, 0.5757, 0.6868):
            shown = f"{cpu * 100:.1f}"
            assert shown not in _widget_text(page, "system")
            sent = time.monotonic()
            stack.push({"name": "system.cpu.utilization", "value": cpu, "unit": "1"})
            page.wait_for_function(
                "shown => document.querySelector('[data-widget=\"system\"]').innerText"
                ".includes(shown)",
                arg=shown,
                timeout=WAIT_MS,
                polling="raf",
            )
            latencies.append(time.monotonic() - sent)
        print(f"pipeline -> screen: {', '.join(f'{x * 1000:.0f} ms' for x in latencies)}")
        # The bound, on the median of three: one push landing right behind a GC
        # pause or a burst of other work on this shared machine must not decide it.
        assert statistics.median(latencies) <= LIVE_WITHIN, latencies
        screenshot(page, "live")
        assert errors.errors == [], errors.errors
    finally:
        page.close()


def _acked(stack: Stack) -> list[dict[str, Any]]:
    result = call_control(stack.api, "alerts", "list", {})
    return [a for a in result["alerts"] if a["rule"] == "queue_backlog" and a["acked_by"]]


def test_acknowledge_button_acks_in_api_and_sqlite(browser: Any, stack: Stack) -> None:
    page, errors = open_page(browser, stack.dashboard + "/")
    # A page may ask who acknowledges; answer for the person clicking.
    page.on("dialog", lambda d: d.accept("browser-test"))
    try:
        stack.push({"name": "test.queue.depth", "value": 500})
        alerts = page.locator('[data-widget="alerts"]')
        button = alerts.get_by_role("button", name=re.compile(r"^\s*ack", re.I)).first
        button.wait_for(state="visible", timeout=WAIT_MS)
        assert "queue_backlog" in _widget_text(page, "alerts")
        screenshot(page, "alert-firing")
        assert _acked(stack) == []
        button.click()
        acked = _wait("the ack in the alerts API", lambda: _acked(stack))
        assert acked[0]["state"] == "firing"
        db = stack.data_dir / "alerts" / "alerts" / "history.db"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT rule, by FROM alert_history WHERE kind = 'ack' AND rule = ?",
                ("queue_backlog",),
            ).fetchall()
        assert len(rows) == 1 and rows[0][1], rows
        assert rows[0][1] == acked[0]["acked_by"]
        # And the page says so: the row names who acknowledged, its button is gone.
        page.wait_for_function(
            """by => {
                const el = document.querySelector('[data-widget="alerts"]');
                const acks = [...el.querySelectorAll('button')]
                    .filter(b => /^\\s*ack/i.test(b.innerText));
                return acks.length === 0 && el.innerText.includes(by);
            }""",
            arg=acked[0]["acked_by"],
            timeout=WAIT_MS,
        )
        screenshot(page, "alert-acknowledged")
        assert errors.errors == [], errors.errors
    finally:
        page.close()


def test_post_without_csrf_token_is_refused(browser: Any, stack: Stack) -> None:
    page, errors = open_page(browser, stack.dashboard + "/")
    try:
        # Same origin, cookies and all, but without the X-CSRF-Token header the page's
        # own code sends: what a form or a script injected into another page could do.
        status = page.evaluate(
            """async () => (await fetch('/api/alerts/queue_backlog/ack', {
                method: 'POST', headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({by: 'csrf-test'})})).status"""
        )
        assert status == 403
        assert all(
            a["acked_by"] != "csrf-test"
            for a in call_control(stack.api, "alerts", "list", {})["alerts"]
        )
        # The refused fetch is the only console error allowed.
        assert all("403" in e for e in errors.errors), errors.errors
    finally:
        page.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_remote_bind_without_token_does_not_start(browser: Any, tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "remote.toml"
    config.write_text(
        f"""
[pipeline]
data_dir = "{tmp_path / "state"}"
[sources.gen]
type = "generate"
[sinks.dash]
type = "dashboard"
inputs = ["gen"]
listen = "0.0.0.0:{port}"
"""
    )
    r = subprocess.run(
        [sys.executable, "-m", "revopipe", "run", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "sinks.dash" in r.stderr and "token" in r.stderr, r.stderr
    # Nothing listens: the browser gets no page.
    page = browser.new_page()
    try:
        with pytest.raises(Exception, match="ERR_CONNECTION_REFUSED"):
            page.goto(f"http://127.0.0.1:{port}/", timeout=WAIT_MS)
    finally:
        page.close()
