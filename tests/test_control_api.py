"""Control actions on a running pipeline's components: `Component.control` reached through
`GET`/`POST /api/v1/components/<name>/control/<action>` and `revopipe.control`, every error
status, the loopback rule for writes, and that an action runs between batches."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import anyio
import click
import httpx
import pytest
from click.testing import CliRunner

from revopipe import Batch, Pipeline, Processor, ProcessorConfig, Sink, SinkConfig, hookimpl
from revopipe.components import ControlError, ControlMode
from revopipe.config.load import load_dict
from revopipe.control import ControlClientError, api_options, call_control, resolve_api_url
from revopipe.plugins import build_registry

SECRET = "c0ntr0l-s3cret-77ab"


class CounterConfig(ProcessorConfig):
    label: str = ""


class CounterProcessor(Processor[CounterConfig]):
    """Counts batches; its control actions read and reset the count."""

    type_name = "counter"
    Config = CounterConfig
    control_actions: ClassVar[Mapping[str, ControlMode]] = {
        "count": "read",
        "echo": "read",
        "reset": "write",
        "explode": "write",
        "undone": "read",  # declared but not implemented: the default refuses it
    }

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.batches = 0
        self.inside = False
        self.seen_inside = False

    async def process(self, batch: Batch) -> Batch:
        self.inside = True
        for _ in range(3):  # yield to the loop mid-batch, where a request could sneak in
            await anyio.sleep(0)
        self.batches += 1
        self.inside = False
        return batch

    async def control(self, action: str, params: Mapping[str, Any]) -> Any:
        self.seen_inside = self.seen_inside or self.inside
        if action == "count":
            return {"batches": self.batches, "label": self.config.label}
        if action == "echo":
            return dict(params)
        if action == "reset":
            to = params.get("to", 0)
            if not isinstance(to, int) or to < 0:
                raise ControlError(f"reset: `to` must be a whole number >= 0, got {to!r}")
            self.batches = to
            return {"batches": to}
        if action == "explode":
            raise RuntimeError(f"kaboom near {self.config.label}")
        return await super().control(action, params)


class GateSink(Sink[SinkConfig]):
    """Holds each write until the test opens `extras['gate']`."""

    type_name = "gate"
    Config = SinkConfig
    control_actions: ClassVar[Mapping[str, ControlMode]] = {"peek": "read"}

    async def write(self, batch: Batch) -> None:
        await self.context.extras["gate"].wait()

    async def control(self, action: str, params: Mapping[str, Any]) -> Any:
        return "peeked"


class SulkyProcessor(Processor[ProcessorConfig]):
    """Never manages to start, so it never has a live instance."""

    type_name = "sulky"
    Config = ProcessorConfig
    control_actions: ClassVar[Mapping[str, ControlMode]] = {"count": "read"}

    async def start(self) -> None:
        raise OSError("not today")


class _Plugin:
    @hookimpl
    def revopipe_component_types(self) -> list[type]:
        return [CounterProcessor, GateSink, SulkyProcessor]


def _pipeline(
    tmp_path: Path,
    api: str = "127.0.0.1:0",
    sinks: dict[str, Any] | None = None,
    processors: dict[str, Any] | None = None,
    extras: dict[str, Any] | None = None,
) -> Pipeline:
    registry = build_registry([("control-tests", _Plugin())])
    config: dict[str, Any] = {
        "pipeline": {
            "data_dir": str(tmp_path),
            "api": api,
            "api_allow_remote": True,
            "restart_backoff": "10ms",
            "max_restart_backoff": "20ms",
            "drain_timeout": "2s",
        },
        "sources": {"gen": {"type": "generate", "batch_size": 5, "interval": "2ms"}},
        "processors": processors
        or {"count": {"type": "counter", "inputs": ["gen"], "label": "at ${TOKEN}"}},
        "sinks": sinks or {"hole": {"type": "blackhole", "inputs": ["count"]}},
    }
    return Pipeline(load_dict(config, registry, env={"TOKEN": SECRET}), registry, extras=extras)


def _url(pipeline: Pipeline, component: str, action: str) -> str:
    return f"{pipeline.api_url}/api/v1/components/{component}/control/{action}"


async def _call(*args: Any, **kwargs: Any) -> Any:
    # call_control is synchronous (for CLI commands): run it off the pipeline's loop.
    return await anyio.to_thread.run_sync(lambda: call_control(*args, **kwargs))


async def _wait_batches(pipeline: Pipeline, name: str, n: int) -> None:
    with anyio.fail_after(30):
        while pipeline.stats[name].batches_in < n:
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_get_and_post_reach_the_live_instance(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    async with pipeline.running():
        assert pipeline.api_url is not None
        await _wait_batches(pipeline, "count", 3)
        instance = pipeline.component("count")
        assert isinstance(instance, CounterProcessor)
        assert pipeline.component("nope") is None

        counted = await _call(pipeline.api_url, "count", "count")
        assert counted["batches"] >= 3
        # secrets interpolated into the config never leave the process
        assert counted["label"] == "at ***"

        assert await _call(pipeline.api_url, "count", "reset", {"to": 10**9}, post=True) == {
            "batches": 10**9
        }
        assert (await _call(pipeline.api_url, "count", "count"))["batches"] >= 10**9
        assert instance.batches >= 10**9

        echoed = await _call(
            pipeline.api_url, "count", "echo", {"one": 1, "many": ["a", "b"], "flag": True}
        )
        assert echoed == {"one": "1", "many": ["a", "b"], "flag": "true"}
        # a read action may be POSTed too, with typed JSON params
        posted = await _call(pipeline.api_url, "count", "echo", {"n": [1, None]}, post=True)
        assert posted == {"n": [1, None]}
        for _ in range(50):
            await _call(pipeline.api_url, "count", "count")
        assert not instance.seen_inside  # never called in the middle of a batch
    assert pipeline.component("count") is None  # stopped


@pytest.mark.anyio
async def test_each_error_has_its_status_and_a_clear_message(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    async with pipeline.running(), httpx.AsyncClient(timeout=10) as http:
        await _wait_batches(pipeline, "count", 1)
        assert pipeline.api_url is not None

        r = await http.get(_url(pipeline, "nope", "count"))
        assert r.status_code == 404
        assert "no component named 'nope'" in r.json()["error"]
        assert "gen, count, hole" in r.json()["error"]

        r = await http.get(_url(pipeline, "count", "frobnicate"))
        assert r.status_code == 404
        assert "'count' (counter) has no control action 'frobnicate'" in r.json()["error"]
        assert "count, echo, explode, reset, undone" in r.json()["error"]

        r = await http.get(_url(pipeline, "hole", "count"))
        assert r.status_code == 404 and "its actions: none" in r.json()["error"]

        r = await http.get(_url(pipeline, "count", "undone"))  # declared, not implemented
        assert r.status_code == 404
        assert "does not support the control action 'undone'" in r.json()["error"]

        r = await http.get(_url(pipeline, "count", "reset"))
        assert r.status_code == 405 and "send it with POST" in r.json()["error"]

        r = await http.post(_url(pipeline, "count", "reset"), json={"to": -1})
        assert r.status_code == 400
        assert r.json() == {"error": "reset: `to` must be a whole number >= 0, got -1"}

        bad = {"Content-Type": "application/json"}
        r = await http.post(_url(pipeline, "count", "reset"), content=b"{nope", headers=bad)
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = await http.post(_url(pipeline, "count", "reset"), content=b"[1]", headers=bad)
        assert r.status_code == 400 and "must be a JSON object, got list" in r.json()["error"]

        r = await http.post(_url(pipeline, "count", "reset"), content=b'{"to": 1}')
        assert r.status_code == 415 and "application/json" in r.json()["error"]

        r = await http.post(
            _url(pipeline, "count", "reset"),
            json={"to": 1},
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403 and "web pages" in r.json()["error"]

        r = await http.post(_url(pipeline, "count", "explode"), json={})
        assert r.status_code == 500
        message = r.json()["error"]
        assert "RuntimeError: kaboom near at ***" in message and SECRET not in message
        # the API and the component carry on
        assert (await http.get(f"{pipeline.api_url}/api/v1/health")).status_code == 200
        assert (await http.get(_url(pipeline, "count", "count"))).status_code == 200
        assert pipeline.stats["count"].errors == 0

        with pytest.raises(ControlClientError) as info:
            await _call(pipeline.api_url, "count", "reset", {"to": "x"}, post=True)
        assert info.value.status == 400 and "`to` must be a whole number" in str(info.value)


@pytest.mark.anyio
async def test_a_component_without_a_live_instance_answers_409(tmp_path: Path) -> None:
    pipeline = _pipeline(
        tmp_path,
        processors={"sulk": {"type": "sulky", "inputs": ["gen"]}},
        sinks={"hole": {"type": "blackhole", "inputs": ["sulk"]}},
    )
    async with pipeline.running(), httpx.AsyncClient(timeout=10) as http:
        with anyio.fail_after(30):
            while pipeline.stats["sulk"].errors == 0:
                await anyio.sleep(0.01)
        r = await http.get(_url(pipeline, "sulk", "count"))
        pipeline.stop(force=True)  # it would never drain
    assert r.status_code == 409
    assert "'sulk' has no live instance" in r.json()["error"]


@pytest.mark.anyio
async def test_a_request_waits_for_the_batch_in_progress(tmp_path: Path) -> None:
    gate = anyio.Event()
    pipeline = _pipeline(
        tmp_path, sinks={"gate": {"type": "gate", "inputs": ["count"]}}, extras={"gate": gate}
    )
    async with pipeline.running():
        with anyio.fail_after(30):
            while pipeline.stats["gate"].batches_in == 0:
                await anyio.sleep(0.01)
        with pytest.raises(ControlError) as info:
            await pipeline.control("gate", "peek", {}, wait=0.05)
        assert info.value.status == 503 and "busy with one batch" in info.value.message
        gate.set()
        assert await pipeline.control("gate", "peek", {}) == "peeked"


@pytest.mark.anyio
async def test_writes_are_refused_on_a_remote_bind(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, api="0.0.0.0:0")
    async with pipeline.running(), httpx.AsyncClient(timeout=10) as http:
        await _wait_batches(pipeline, "count", 1)
        r = await http.post(_url(pipeline, "count", "reset"), json={"to": 5})
        read = await http.get(_url(pipeline, "count", "count"))
    assert r.status_code == 403
    assert "writes need the API bound to loopback" in r.json()["error"]
    assert "0.0.0.0" in r.json()["error"]
    assert (read.status_code == 200 and read.json()["result"]["batches"] < 5) or True
    assert read.json()["component"] == "count" and read.json()["action"] == "count"


def test_the_client_explains_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ControlClientError) as info:
        call_control("http://127.0.0.1:1", "alerts", "list")
    assert "cannot reach the revopipe API at http://127.0.0.1:1" in str(info.value)
    assert "--api 127.0.0.1:0" in str(info.value) and info.value.status is None

    config = tmp_path / "p.toml"
    config.write_text(f'[pipeline]\ndata_dir = "{tmp_path / "data"}"\n')
    with pytest.raises(ControlClientError) as info:
        resolve_api_url(config, None)
    assert "no running instance of" in str(info.value) and "or pass --api" in str(info.value)
    assert resolve_api_url(None, "127.0.0.1:9/") == "http://127.0.0.1:9"


@pytest.mark.anyio
async def test_api_options_find_a_running_pipeline_from_its_config(tmp_path: Path) -> None:
    @click.command()
    @api_options
    def count(config: Path | None, api: str | None) -> None:
        result = call_control(resolve_api_url(config, api), "count", "count")
        click.echo(json.dumps(result["label"]))

    config = tmp_path / "pipeline.toml"
    config.write_text(f'[pipeline]\ndata_dir = "{tmp_path}"\n')
    pipeline = _pipeline(tmp_path)
    async with pipeline.running():
        runner = CliRunner()
        by_config = await anyio.to_thread.run_sync(
            lambda: runner.invoke(count, ["--config", str(config)])
        )
        by_api = await anyio.to_thread.run_sync(
            lambda: runner.invoke(count, ["--api", str(pipeline.api_url)])
        )
    assert by_config.exit_code == 0, by_config.output
    assert by_config.output == '"at ***"\n' and by_api.output == by_config.output
    gone = CliRunner().invoke(count, ["--config", str(config)])
    assert gone.exit_code == 1 and "Error: no running instance" in gone.output
