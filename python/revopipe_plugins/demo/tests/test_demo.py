"""`revopipe demo`: the preset it runs, the sample service, and the real command end to end
(a subprocess serving the dashboard, whose API must show per-route data)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import click
import httpx
import pytest

from revopipe import metrics
from revopipe.config.load import load_dict
from revopipe_plugins.demo.cli import LOAD_SOURCE, demo_config, load_preset
from revopipe_plugins.demo.service import SampleService

REPO = Path(__file__).resolve().parents[4]
EXAMPLE = REPO / "examples" / "monitoring.toml"
PACKAGED = Path(__file__).resolve().parents[1] / "monitoring.toml"


def test_packaged_preset_is_the_example() -> None:
    # The command ships its own copy (examples/ is not in the wheel); they must not drift.
    assert PACKAGED.read_text() == EXAMPLE.read_text(), (
        "python/revopipe_plugins/demo/monitoring.toml differs from examples/monitoring.toml; "
        "copy the example over it"
    )


def _config(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "service_url": "http://127.0.0.1:1234",
        "data_dir": tmp_path / "state",
        "port": 0,
        "rps": 5.0,
        "duration": 15.0,
    }
    args.update(kw)
    return demo_config(load_preset(), **args)


def test_demo_config_adds_load_and_moves_listeners(tmp_path: Path) -> None:
    cfg = _config(tmp_path, port=18050)
    load = cfg["sources"][LOAD_SOURCE]
    assert load["type"] == "loadtest"
    urls = {r["url"] for r in load["requests"]}
    assert "http://127.0.0.1:1234/api/search?q=lamp" in urls
    assert cfg["pipeline"]["data_dir"] == str(tmp_path / "state")
    dashboards = [s for s in cfg["sinks"].values() if s["type"] == "dashboard"]
    assert [d["listen"] for d in dashboards] == ["127.0.0.1:18050"]
    assert all(
        s["listen"] == "127.0.0.1:0" for s in cfg["sinks"].values() if s["type"] == "prometheus"
    )
    aggregates = [p for p in cfg["processors"].values() if p["type"] == "aggregate"]
    assert aggregates and all(LOAD_SOURCE in p["inputs"] for p in aggregates)
    # The result is a valid pipeline, as `revopipe validate` would say.
    spec = load_dict(cfg)
    assert LOAD_SOURCE in spec.components


def test_demo_config_needs_a_dashboard(tmp_path: Path) -> None:
    base = load_preset()
    base["sinks"] = {k: v for k, v in base["sinks"].items() if v["type"] != "dashboard"}
    with pytest.raises(click.ClickException, match="no `dashboard` sink"):
        demo_config(
            base,
            service_url="http://127.0.0.1:1",
            data_dir=tmp_path,
            port=0,
            rps=1.0,
            duration=None,
        )


def _route_counts() -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for r in metrics.collect():
        if r["name"] == "http.server.request.duration":
            tags = dict(r["tags"])
            key = (tags["http.route"], tags["http.response.status_class"])
            out[key] = out.get(key, 0) + int(r["count"])
    return out


@pytest.mark.anyio
async def test_sample_service_routes_are_instrumented() -> None:
    service = SampleService(seed=7)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.serve)
        try:
            await service.wait_started()
            async with httpx.AsyncClient(base_url=service.url) as client:
                assert (await client.get("/")).status_code == 200
                assert (await client.get("/api/items/3")).json()["id"] == 3
                assert (await client.get("/api/items/999")).status_code == 404
                assert (await client.get("/api/search", params={"q": "x"})).status_code == 200
                statuses = {(await client.get("/api/checkout")).status_code for _ in range(40)}
            # 15 % failures: 40 tries see both outcomes except with probability ~0.2 %,
            # and the seed makes it repeatable.
            assert statuses == {201, 503}
        finally:
            service.stop()
    seen = _route_counts()
    for key in [
        ("/", "2xx"),
        ("/api/items/{item_id}", "2xx"),
        ("/api/items/{item_id}", "4xx"),
        ("/api/search", "2xx"),
        ("/api/checkout", "5xx"),
    ]:
        assert seen.get(key, 0) >= 1, f"no {key} in {seen}"


def _per_route(data: Any) -> set[str]:
    """Every route template named anywhere in the `api` widget's JSON."""
    text = json.dumps(data)
    return set(re.findall(r"/api/[a-z]+(?:/\{item_id\})?", text))


@pytest.mark.slow
def test_demo_runs_and_the_dashboard_shows_routes(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "revopipe",
            "demo",
            "--port",
            "0",
            "--duration",
            "25s",
            "--rps",
            "20",
            "--data-dir",
            str(tmp_path / "state"),
            "--seed",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        dashboard = None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        # The banner ends with the load line ("... Ctrl-C drains and stops").
        while not any("Ctrl-C" in x for x in lines) and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"dashboard\s+(http://\S+)", line)
            if m:
                dashboard = m.group(1).rstrip("/")
        assert dashboard, f"no dashboard URL printed: {lines}"
        assert any(re.search(r"service\s+http://127\.0\.0\.1:\d+", x) for x in lines), lines
        routes: set[str] = set()
        data: Any = None
        with httpx.Client(base_url=dashboard, timeout=10) as client:
            assert client.get("/").status_code == 200
            # The first 5 s window closes ~5-10 s in; the run ends at 25 s.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                r = client.get("/api/widgets/api")
                assert r.status_code == 200, r.text
                data = r.json()
                routes = _per_route(data)
                if {"/api/search", "/api/checkout", "/api/items/{item_id}"} <= routes:
                    break
                time.sleep(1)
        assert {"/api/search", "/api/checkout", "/api/items/{item_id}"} <= routes, data
        # --duration ends it by itself, draining: exit status 0.
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def test_demo_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "revopipe",
                "demo",
                "--port",
                str(port),
                "--duration",
                "5s",
                "--data-dir",
                str(tmp_path / "state"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1
    assert f"127.0.0.1:{port}" in r.stderr and "--port" in r.stderr, r.stderr
