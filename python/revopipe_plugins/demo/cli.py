"""`revopipe demo`: the monitoring preset (`examples/monitoring.toml`) watching a sample web
service under a light load test, all in one process, so every dashboard widget has live
data a few seconds after the start.

One process on purpose: the preset's `app` source reads the instruments of the process it
runs in, and the service's `RevopipeMiddleware` records into exactly those. The load comes
from the Rust generator (a `loadtest` source added to the pipeline), which keeps the GIL
released, so it hardly competes with the service it measures.
"""

from __future__ import annotations

import copy
import logging
import math
import signal
import socket
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import click

from revopipe.config.errors import ConfigInvalid
from revopipe.config.redact import RedactingFilter
from revopipe.config.units import parse_duration
from revopipe.runtime.pipeline import Pipeline, first_error
from revopipe_plugins.demo.service import ROUTES, SampleService

__all__ = ["DemoUrls", "check_port_free", "demo", "demo_config", "load_preset", "run_demo"]

PRESET = "monitoring.toml"
"""The packaged copy of `examples/monitoring.toml` (a test keeps the two identical)."""
LOAD_SOURCE = "demo_load"
DEFAULT_DATA_DIR = Path(".revopipe-demo")
FOREVER = 365 * 86400.0
log = logging.getLogger("revopipe.demo")


def load_preset(path: Path | None = None) -> dict[str, Any]:
    """The monitoring preset as a config mapping: `path`, or the packaged copy."""
    if path is None:
        text = resources.files("revopipe_plugins.demo").joinpath(PRESET).read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return tomllib.loads(text)


def _of_type(section: Mapping[str, Any], type_name: str) -> list[str]:
    return [n for n, t in section.items() if isinstance(t, Mapping) and t.get("type") == type_name]


def demo_config(
    base: Mapping[str, Any],
    *,
    service_url: str,
    data_dir: Path,
    port: int,
    rps: float,
    duration: float | None,
) -> dict[str, Any]:
    """`base` (the monitoring preset) adapted to the demo: its state under `data_dir`, the
    dashboard on `127.0.0.1:port`, other listeners on free ports (a `revopipe run` of the
    preset may hold the fixed ones), and a `loadtest` source sending `rps` requests a
    second to the service's routes, fed into every `aggregate` that reads the `app`
    source."""
    cfg = copy.deepcopy(dict(base))
    pipeline = cfg.setdefault("pipeline", {})
    pipeline["data_dir"] = str(data_dir)
    pipeline["api"] = "127.0.0.1:0"
    pipeline.setdefault("name", "monitoring")
    pipeline["name"] = f"{pipeline['name']}-demo"
    sources = cfg.setdefault("sources", {})
    processors = cfg.setdefault("processors", {})
    sinks = cfg.setdefault("sinks", {})
    dashboards = _of_type(sinks, "dashboard")
    if not dashboards:
        raise click.ClickException(
            "demo: the config has no `dashboard` sink; add one (see examples/monitoring.toml)"
        )
    for name in dashboards:
        sinks[name]["listen"] = f"127.0.0.1:{port}"
    for name in _of_type(sinks, "prometheus"):
        sinks[name]["listen"] = "127.0.0.1:0"
    for name in _of_type(sources, "statsd"):
        sources[name]["address"] = "127.0.0.1:0"
    for name in _of_type(sources, "http"):
        sources[name]["address"] = "127.0.0.1:0"
    hold = FOREVER if duration is None else max(duration, 1.0)
    target = f"{rps:g}"
    sources[LOAD_SOURCE] = {
        "type": "loadtest",
        "name": "demo",
        "test": "custom",
        "model": "open",
        # A short ramp, then a steady rate: the generator's latency from intended send
        # times keeps coordinated omission out of the numbers.
        "stages": [f"2s:{target}", f"{hold:g}s:{target}"],
        "users": 32,
        "timeout": "5s",
        "requests": _mix(service_url),
    }
    app_sources = set(_of_type(sources, "app"))
    for name in _of_type(processors, "aggregate"):
        inputs = processors[name].setdefault("inputs", [])
        if app_sources.intersection(inputs) and LOAD_SOURCE not in inputs:
            inputs.append(LOAD_SOURCE)
    return cfg


def _mix(service_url: str) -> list[dict[str, Any]]:
    paths = {
        "/": "/",
        "/api/items/{item_id}": "/api/items/42",
        "/api/search": "/api/search?q=lamp",
        "/api/checkout": "/api/checkout",
    }
    mix = [{"url": service_url + paths[r], "weight": w} for r, w in ROUTES.items()]
    # A few unknown items: 404s for the error widget's 4xx column.
    mix.append({"url": service_url + "/api/items/999", "weight": 0.3})
    return mix


@dataclass(frozen=True, slots=True)
class DemoUrls:
    """Where the running demo's parts answer."""

    dashboard: str
    service: str
    prometheus: str | None
    api: str | None


def _listen_port(component: object) -> int | None:
    for attr in ("port", "bound_port"):
        value = getattr(component, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    url = getattr(component, "url", None)
    if isinstance(url, str) and url.rsplit(":", 1)[-1].rstrip("/").isdigit():
        return int(url.rsplit(":", 1)[-1].rstrip("/"))
    return None


def _urls(pipeline: Pipeline, service: SampleService, port: int) -> DemoUrls:
    sinks = {c.name: c for c in pipeline.spec.components.values() if c.kind == "sink"}
    dash_port = port
    prom_url = None
    for name, spec in sinks.items():
        component = pipeline.component(name)
        if spec.config.type == "dashboard" and component is not None:
            dash_port = _listen_port(component) or port
        elif spec.config.type == "prometheus" and component is not None:
            prom_port = _listen_port(component)
            if prom_port is not None:
                prom_url = f"http://127.0.0.1:{prom_port}/metrics"
    return DemoUrls(f"http://127.0.0.1:{dash_port}/", service.url, prom_url, pipeline.api_url)


async def run_demo(
    pipeline: Pipeline,
    service: SampleService,
    *,
    duration: float | None,
    on_started: Callable[[], None] = lambda: None,
    handle_signals: bool = True,
) -> bool:
    """Serve the sample service, run the pipeline until `duration` passed, a signal
    arrived or it failed, then drain: the load stops with the other sources, in-flight
    data flows through, and the service stops last, so requests in flight still get
    answers. Returns True when a second signal forced the stop."""
    forced = False

    async def watch_signals(scope: anyio.CancelScope) -> None:
        nonlocal forced
        with scope, anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if pipeline.draining:
                    log.warning("second signal: stopping now")
                    forced = True
                    pipeline.stop(force=True)
                else:
                    name = signal.Signals(signum).name
                    log.warning("%s: draining (send again to stop at once)", name)
                    pipeline.stop()

    async def stop_after(scope: anyio.CancelScope, seconds: float) -> None:
        with scope:
            await anyio.sleep(seconds)
            log.info("demo: %gs passed, draining", seconds)
            pipeline.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(service.serve)
        signals_scope, timer_scope = anyio.CancelScope(), anyio.CancelScope()
        try:
            await service.wait_started()
            if handle_signals:
                tg.start_soon(watch_signals, signals_scope)

            async def run_pipeline() -> None:
                try:
                    await pipeline.run()
                finally:
                    timer_scope.cancel()  # ended by a signal or a failure: no timer left

            async with anyio.create_task_group() as ptg:
                ptg.start_soon(run_pipeline)
                await pipeline.wait_started()
                if pipeline.running_now:
                    missing = await _sinks_up(pipeline)
                    if missing:
                        # A dashboard that cannot start would retry forever behind a
                        # banner pointing at nothing; stop instead, saying which.
                        log.error(
                            "demo: sink(s) %s did not start (see the errors above); stopping",
                            ", ".join(missing),
                        )
                        pipeline.stop(force=True)
                        raise click.ClickException(f"sink(s) {', '.join(missing)} did not start")
                    on_started()
                    if duration is not None:
                        ptg.start_soon(stop_after, timer_scope, duration)
        finally:
            signals_scope.cancel()
            timer_scope.cancel()
            service.stop()
    return forced


async def _sinks_up(pipeline: Pipeline, timeout: float = 15.0) -> list[str]:
    """Wait (bounded) for every sink to have started: the pipeline counts as started once
    its sources are, while the sinks that serve (dashboard, Prometheus) may still bind.
    Returns the sinks still not up."""
    names = [c.name for c in pipeline.spec.components.values() if c.kind == "sink"]
    with anyio.move_on_after(timeout):
        while pipeline.running_now and any(pipeline.component(n) is None for n in names):
            await anyio.sleep(0.05)
    return [n for n in names if pipeline.component(n) is None]


def check_port_free(port: int) -> None:
    """Fail fast, naming the fix, when the dashboard's port is taken."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as uvicorn binds: a port in TIME_WAIT is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise click.ClickException(
                f"demo: the dashboard cannot listen on 127.0.0.1:{port} "
                f"({exc.strerror or exc}); pick another with --port (0 = a free one)"
            ) from None


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (e.g. '30s', '10m')") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise click.BadParameter(f"must be above zero (e.g. '30s'), got {value!r}")
    return seconds


@click.command("demo")
@click.option(
    "--port",
    default=8050,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="dashboard port on 127.0.0.1 (0 = a free one)",
)
@click.option(
    "--duration",
    callback=_duration,
    metavar="DURATION",
    help="stop (and drain) after this long, e.g. '60s'; default: until Ctrl-C",
)
@click.option(
    "--rps",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0.1, max=10000),
    help="load-test arrivals per second against the sample service",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="the pipeline's state: history, alerts, recommendations",
)
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="a monitoring config to use instead of the bundled examples/monitoring.toml",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option("--seed", type=int, help="make the service's latencies and failures repeatable")
def demo(
    port: int,
    duration: float | None,
    rps: float,
    data_dir: Path,
    config: Path | None,
    log_level: str,
    seed: int | None,
) -> None:
    """The whole monitoring system with something to watch: a sample web service, a light
    load test against it and the pipeline of examples/monitoring.toml with its dashboard.
    Ctrl-C drains everything."""
    check_port_free(port)
    service = SampleService(seed=seed)
    try:
        cfg = demo_config(
            load_preset(config),
            service_url=service.url,
            data_dir=data_dir,
            port=port,
            rps=rps,
            duration=duration,
        )
        pipeline = Pipeline.from_dict(cfg)
    except ConfigInvalid as exc:
        service.sock.close()
        click.echo(exc.render(), err=True)
        sys.exit(2)
    except BaseException:
        service.sock.close()
        raise
    _setup_logging(log_level, pipeline)

    def announce() -> None:
        urls = _urls(pipeline, service, port)
        lines = [
            "revopipe demo is running",
            f"  dashboard    {urls.dashboard}",
            f"  service      {urls.service}/  (routes: {', '.join(ROUTES)})",
        ]
        if urls.prometheus:
            lines.append(f"  prometheus   {urls.prometheus}")
        if urls.api:
            lines.append(f"  control API  {urls.api}   e.g. revopipe alerts --api {urls.api} list")
        lines.append(f"  data         {data_dir}")
        lines.append(
            f"  load         {rps:g} req/s"
            + (f" for {duration:g}s" if duration is not None else "")
            + "; Ctrl-C drains and stops"
        )
        click.echo("\n".join(lines), nl=True)
        sys.stdout.flush()

    try:
        forced = anyio.run(_run, pipeline, service, duration, announce)
    except Exception as group:
        err = first_error(group)
        log.error("demo failed: %s: %s", type(err).__name__, err)
        sys.exit(1)
    click.echo("revopipe demo: stopped", err=True)
    sys.exit(1 if forced else 0)


async def _run(
    pipeline: Pipeline, service: SampleService, duration: float | None, announce: Callable[[], None]
) -> bool:
    return await run_demo(pipeline, service, duration=duration, on_started=announce)


def _setup_logging(level: str, pipeline: Pipeline) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(pipeline.spec.redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The demo's own lines (drain, duration) are worth seeing at the default level.
    log.setLevel(min(logging.INFO, root.level))
