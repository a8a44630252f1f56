"""The control API (`[pipeline] api` / `revopipe run --api`): endpoints, api.json, the
loopback rule and secrets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import revopipe
from revopipe import Batch, Pipeline, Sink, SinkConfig, hookimpl
from revopipe.config.address import is_loopback, parse_address
from revopipe.config.errors import ConfigInvalid
from revopipe.config.load import load_dict
from revopipe.config.schema import PipelineSettings
from revopipe.plugins import build_registry
from revopipe.runtime.api import API_FILE, ApiError, read_api_file
from revopipe.runtime.pipeline import first_error
from tests.conftest import revopipe_cmd, run_cli

SECRET = "s3cr3t-token-9f2c1d"

PIPELINE = """
[pipeline]
name = "api-test-${{PIPE_SECRET}}"
data_dir = "{dir}"
[sources.gen]
type = "generate"
batch_size = 20
interval = "5ms"
tags = {{ token = "${{PIPE_SECRET}}" }}
[sinks.hole]
type = "blackhole"
inputs = ["gen"]
"""


def wait_for_api_file(
    data_dir: Path, proc: subprocess.Popen[str], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = read_api_file(data_dir / API_FILE)
        if record is not None:
            return record
        if proc.poll() is not None:
            raise AssertionError(f"revopipe run exited early: {proc.communicate()[1]}")
        time.sleep(0.05)
    raise AssertionError(f"{data_dir / API_FILE} did not appear within {timeout}s")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any], Path]]:
    config = tmp_path / "p.toml"
    config.write_text(PIPELINE.format(dir=tmp_path))
    proc = subprocess.Popen(
        revopipe_cmd("run", str(config), "--api", "127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PIPE_SECRET": SECRET},
    )
    try:
        yield proc, wait_for_api_file(tmp_path, proc), tmp_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def events(body: dict[str, Any], name: str, key: str) -> int:
    return next(c[key] for c in body["components"] if c["name"] == name)


@pytest.mark.slow
def test_run_serves_the_api_and_removes_api_json_on_sigterm(
    running: tuple[subprocess.Popen[str], dict[str, Any], Path],
) -> None:
    proc, record, data_dir = running
    assert record["pid"] == proc.pid
    assert record["url"].startswith("http://127.0.0.1:") and not record["url"].endswith(":0")
    assert record["started"]
    api = f"{record['url']}/api/v1"
    with httpx.Client(timeout=10) as http:
        health = http.get(f"{api}/health")
        assert health.status_code == 200
        assert health.json()["status"] == "healthy"
        assert health.json()["running"] is True
        assert set(health.json()["components"]) == {"gen", "hole"}

        first = http.get(f"{api}/components").json()
        assert {c["name"]: (c["kind"], c["type"]) for c in first["components"]} == {
            "gen": ("source", "generate"),
            "hole": ("sink", "blackhole"),
        }
        hole = next(c for c in first["components"] if c["name"] == "hole")
        for key in ("events_in", "events_out", "dropped", "errors", "retries", "restarts"):
            assert isinstance(hole[key], int)
        assert hole["queue"]["capacity"] == 16 and hole["inputs"] == ["gen"]
        assert next(c for c in first["components"] if c["name"] == "gen")["queue"] is None

        # counts grow, against the server's own monotonic clock
        deadline = time.monotonic() + 30
        second = first
        while time.monotonic() < deadline and events(second, "hole", "events_in") <= events(
            first, "hole", "events_in"
        ):
            time.sleep(0.1)
            second = http.get(f"{api}/components").json()
        assert events(second, "hole", "events_in") > events(first, "hole", "events_in")
        assert events(second, "gen", "events_out") > events(first, "gen", "events_out")
        assert second["timestamp"] > first["timestamp"]

        pipe = http.get(f"{api}/pipeline")
        assert pipe.status_code == 200
        body = pipe.json()
        assert body["name"] == "api-test-***"
        assert body["version"] == revopipe.__version__
        assert body["pid"] == proc.pid and body["uptime_seconds"] > 0
        assert body["edges"] == [["gen", "hole"]]
        assert [c["name"] for c in body["components"]] == ["gen", "hole"]
        for path in ("health", "components", "pipeline"):
            assert SECRET not in http.get(f"{api}/{path}").text

    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert not (data_dir / API_FILE).exists()
    assert SECRET not in stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api}/health", timeout=5)


def test_run_refuses_a_non_loopback_api_without_opt_in(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(PIPELINE.format(dir=tmp_path))
    r = run_cli("run", str(config), "--api", "0.0.0.0:0", env={"PIPE_SECRET": SECRET})
    assert r.returncode == 2
    assert "not a loopback address" in r.stderr and "api_allow_remote" in r.stderr
    assert "Traceback" not in r.stderr

    config.write_text(PIPELINE.format(dir=tmp_path) + "\n")
    text = config.read_text().replace("[pipeline]", '[pipeline]\napi = "0.0.0.0:8686"')
    config.write_text(text)
    r = run_cli("validate", str(config), env={"PIPE_SECRET": SECRET})
    assert r.returncode == 2
    assert "pipeline.api: '0.0.0.0:8686' is not a loopback address" in r.stderr


# -- config ------------------------------------------------------------------------------


def test_api_is_off_by_default_and_validated() -> None:
    assert PipelineSettings().api is None
    assert PipelineSettings(api="localhost:0").api == "127.0.0.1:0"
    assert PipelineSettings(api="[::1]:8686").api == "[::1]:8686"
    assert PipelineSettings(api="0.0.0.0:1", api_allow_remote=True).api == "0.0.0.0:1"
    for bad, message in [
        ("8686", "expected 'host:port'"),
        ("127.0.0.1:70000", "out of range"),
        ("10.1.2.3:8686", "not a loopback address"),
        ("example.com:8686", "not a loopback address"),
    ]:
        with pytest.raises(ValidationError, match=message):
            PipelineSettings(api=bad)


@given(
    st.ip_addresses(),
    st.integers(min_value=0, max_value=65535),
)
def test_address_parsing_round_trips(ip: Any, port: int) -> None:
    text = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    host, parsed_port = parse_address(text)
    assert (host, parsed_port) == (str(ip), port)
    assert is_loopback(host) == ip.is_loopback


# -- in process --------------------------------------------------------------------------


class LeakyConfig(SinkConfig):
    url: str


class LeakySink(Sink[LeakyConfig]):
    """Always fails, naming its (secret-bearing) URL in the error, as client libraries do."""

    type_name = "leaky"
    Config = LeakyConfig

    async def write(self, batch: Batch) -> None:
        raise ConnectionError(f"cannot POST to {self.config.url}")


class _Plugin:
    @hookimpl
    def revopipe_component_types(self) -> list[type]:
        return [LeakySink]


def _pipeline(tmp_path: Path, api: str = "127.0.0.1:0", **sinks: dict[str, Any]) -> Pipeline:
    registry = build_registry([("api-tests", _Plugin())])
    config: dict[str, Any] = {
        "pipeline": {
            "data_dir": str(tmp_path),
            "api": api,
            "restart_backoff": "10ms",
            "max_restart_backoff": "20ms",
        },
        "sources": {"gen": {"type": "generate", "batch_size": 5, "interval": "5ms"}},
        "sinks": sinks or {"hole": {"type": "blackhole", "inputs": ["gen"]}},
    }
    return Pipeline(load_dict(config, registry, env={"TOKEN": SECRET}), registry)


@pytest.mark.anyio
async def test_errors_are_redacted_and_health_is_503_while_unhealthy(tmp_path: Path) -> None:
    pipeline = _pipeline(
        tmp_path,
        leak={
            "type": "leaky",
            "inputs": ["gen"],
            "url": "https://h/?token=${TOKEN}",
            "max_retries": 0,
        },
    )
    async with pipeline.running(), httpx.AsyncClient(timeout=10) as http:
        assert pipeline.api_url is not None
        with anyio.fail_after(30):
            while pipeline.stats["leak"].errors == 0:
                await anyio.sleep(0.01)
        health = await http.get(f"{pipeline.api_url}/api/v1/health")
        comps = await http.get(f"{pipeline.api_url}/api/v1/components")
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy"
    assert health.json()["components"]["leak"]["health"] == "unhealthy"
    leak = next(c for c in comps.json()["components"] if c["name"] == "leak")
    assert "cannot POST to https://h/?token=***" in leak["last_error"]
    assert leak["errors"] >= 1 and leak["dead_lettered"] >= 1
    assert SECRET not in health.text + comps.text
    assert pipeline.api_url is None  # stopped with the pipeline


@pytest.mark.anyio
async def test_requests_for_other_host_names_are_refused(tmp_path: Path) -> None:
    # a page on evil.example whose DNS name was rebound to 127.0.0.1 sends Host: evil.example
    pipeline = _pipeline(tmp_path)
    async with pipeline.running(), httpx.AsyncClient(timeout=10) as http:
        url = f"{pipeline.api_url}/api/v1/components"
        evil = await http.get(url, headers={"Host": "evil.example:8686"})
        local = await http.get(url, headers={"Host": "localhost:8686"})
        # HTTP/1.0 without a Host header: not a browser, so not a rebinding attack
        host, port = parse_address(pipeline.api_url.removeprefix("http://"))
        stream = await anyio.connect_tcp(host, port)
        async with stream:
            await stream.send(b"GET /api/v1/health HTTP/1.0\r\n\r\n")
            reply = b""
            with anyio.fail_after(10):
                while not reply.endswith(b"}"):
                    reply += await stream.receive()
    assert evil.status_code == 421
    assert "not a loopback name" in evil.json()["error"]
    assert local.status_code == 200
    assert reply.startswith(b"HTTP/1.0 200")


@pytest.mark.anyio
async def test_api_file_of_another_instance_is_left_alone(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    async with pipeline.running():
        record = read_api_file(tmp_path / API_FILE)
        assert record is not None and record["url"] == pipeline.api_url
        # another instance with the same data_dir took the file over
        (tmp_path / API_FILE).write_text(json.dumps({"url": "http://127.0.0.1:1", "pid": 1}))
    assert read_api_file(tmp_path / API_FILE) == {"url": "http://127.0.0.1:1", "pid": 1}


@pytest.mark.anyio
async def test_an_address_in_use_is_a_clear_error_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pipeline = _pipeline(tmp_path, api=f"127.0.0.1:{port}")
        with pytest.raises(BaseException) as info:
            await pipeline.run()
    exc = first_error(info.value)
    assert isinstance(exc, ApiError)
    assert f"pipeline.api: cannot listen on 127.0.0.1:{port}" in str(exc)
    assert "port 0 picks a free one" in str(exc)
    assert pipeline.stats["gen"].events_out == 0
    assert not (tmp_path / API_FILE).exists()


@pytest.mark.anyio
async def test_an_unwritable_api_json_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / API_FILE).mkdir()
    pipeline = _pipeline(tmp_path)
    with pytest.raises(BaseException) as info:
        await pipeline.run()
    exc = first_error(info.value)
    assert isinstance(exc, ApiError)
    assert f"pipeline.api: cannot write {tmp_path / API_FILE}" in str(exc)
    assert pipeline.stats["gen"].events_out == 0


def test_embed_serves_the_api(tmp_path: Path) -> None:
    handle = revopipe.embed(_pipeline(tmp_path))
    try:
        assert handle.api_url is not None
        r = httpx.get(f"{handle.api_url}/api/v1/pipeline", timeout=10)
        assert r.status_code == 200 and r.json()["edges"] == [["gen", "hole"]]
        assert (tmp_path / API_FILE).exists()
    finally:
        handle.stop()
    assert handle.api_url is None
    assert not (tmp_path / API_FILE).exists()


def test_a_non_string_api_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid, match=r"pipeline\.api: expected 'host:port'"):
        load_dict({"pipeline": {"api": 8686}, "sources": {"g": {"type": "generate"}}})
