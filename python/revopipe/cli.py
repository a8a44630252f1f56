"""The `revopipe` command line. Plugins add subcommands through `revopipe_register_commands`."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import click
from pydantic import ValidationError

from revopipe.config.errors import ConfigInvalid
from revopipe.config.load import load_file, load_text
from revopipe.config.redact import RedactingFilter, Redactor
from revopipe.config.schema import PipelineSettings
from revopipe.config.spec import PipelineSpec
from revopipe.config.units import parse_duration
from revopipe.plugins import PluginError, Registry, default_registry
from revopipe.runtime.pipeline import Pipeline, first_error

EXIT_INVALID = 2
DEMO = "system.toml"


def _registry() -> Registry:
    try:
        return default_registry()
    except PluginError as exc:
        click.echo(f"revopipe: {exc}", err=True)
        sys.exit(EXIT_INVALID)


def _load(config: Path | None, registry: Registry) -> PipelineSpec:
    try:
        if config is None:
            text = resources.files("revopipe.defaults").joinpath(DEMO).read_text("utf-8")
            return load_text(text, registry, source=f"(built-in demo {DEMO})")
        return load_file(config, registry)
    except ConfigInvalid as exc:
        click.echo(exc.render(), err=True)
        sys.exit(EXIT_INVALID)


def _with_api(spec: PipelineSpec, api: str | None, allow_remote: bool) -> PipelineSpec:
    """`spec` with `run --api` / `--api-allow-remote` applied, validated like the file."""
    values = spec.settings.model_dump()
    if api is not None:
        values["api"] = None if api.strip().lower() in ("off", "none", "") else api
    values["api_allow_remote"] = values["api_allow_remote"] or allow_remote
    try:
        settings = PipelineSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        click.echo(f"revopipe run: --api {api}: {problems}", err=True)
        sys.exit(EXIT_INVALID)
    return dataclasses.replace(spec, settings=settings)


def _setup_logging(level: str, redactor: Redactor) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class _Cli(click.Group):
    """Loads plugin subcommands the first time the command list is needed."""

    _plugins_loaded = False

    def _load_plugins(self) -> None:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            _registry().pm.hook.revopipe_register_commands(cli=self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugins()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None:
            self._load_plugins()
            cmd = super().get_command(ctx, cmd_name)
        return cmd


@click.group(cls=_Cli)
@click.version_option(package_name="revopipe")
def cli() -> None:
    """revopipe: sources, processors and sinks declared in pipeline.toml."""


@cli.command()
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--stats-file",
    type=click.Path(path_type=Path),
    help="write every component's final counters here as JSON on exit",
)
@click.option(
    "--api",
    "api",
    metavar="HOST:PORT",
    help="serve the control API `revopipe top` reads on this address (port 0 = a free "
    "port), overriding [pipeline] api; 'off' disables it",
)
@click.option(
    "--api-allow-remote",
    is_flag=True,
    help="allow --api on a non-loopback address (the API has no authentication)",
)
def run(
    config: Path | None,
    log_level: str,
    stats_file: Path | None,
    api: str | None,
    api_allow_remote: bool,
) -> None:
    """Run CONFIG (default: the built-in demo) until Ctrl-C / SIGTERM, then drain.

    A first signal drains (sources stop, in-flight batches flow through, sinks flush);
    a second one stops at once. With the control API on, `<data_dir>/api.json` names its
    URL while the pipeline runs, so `revopipe top CONFIG` finds it.
    """
    registry = _registry()
    spec = _load(config, registry)
    if api is not None or api_allow_remote:
        spec = _with_api(spec, api, api_allow_remote)
    _setup_logging(log_level, spec.redactor)
    pipeline = Pipeline(spec, registry)
    try:
        forced = anyio.run(_run_until_signalled, pipeline)
    except Exception as group:
        exc = first_error(group)
        logging.getLogger("revopipe").error("pipeline failed: %s: %s", type(exc).__name__, exc)
        click.echo(_summary(pipeline.snapshot()), err=True)
        sys.exit(1)
    snapshot = pipeline.snapshot()
    click.echo(_summary(snapshot), err=True)
    if stats_file is not None:
        stats_file.write_text(json.dumps(snapshot, indent=2))
    sys.exit(1 if forced else 0)


async def _run_until_signalled(pipeline: Pipeline) -> bool:
    forced = False

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal forced
        with scope, anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if pipeline._stop_requested is not None and pipeline._stop_requested.is_set():
                    logging.getLogger("revopipe").warning("second signal: stopping now")
                    forced = True
                    pipeline.stop(force=True)
                else:
                    logging.getLogger("revopipe").info(
                        "%s: draining (send again to stop at once)", signal.Signals(signum).name
                    )
                    pipeline.stop()

    watcher = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, watcher)
        await pipeline.run()
        watcher.cancel()
    return forced


def _summary(snapshot: list[dict[str, Any]]) -> str:
    cols = ("events_in", "events_out", "dropped", "errors", "restarts", "dead_lettered")
    header = f"{'component':<20} {'kind':<9} " + " ".join(f"{c:>13}" for c in cols) + "  health"
    lines = ["revopipe: final counters", header]
    for s in snapshot:
        lines.append(
            f"{s['name']:<20} {s['kind']:<9} "
            + " ".join(f"{s[c]:>13}" for c in cols)
            + f"  {s['health']}"
        )
    return "\n".join(lines)


@cli.command()
@click.argument("config", type=click.Path(path_type=Path))
def validate(config: Path) -> None:
    """Check CONFIG without running it. Exit 0 when valid, 2 with every error when not."""
    registry = _registry()
    spec = _load(config, registry)
    counts = {
        k: sum(1 for c in spec.components.values() if c.kind == k)
        for k in ("source", "processor", "sink")
    }
    click.echo(
        f"{config}: valid ({counts['source']} sources, {counts['processor']} "
        f"processors, {counts['sink']} sinks)"
    )
    for name in spec.order:
        c = spec.components[name]
        arrow = f" <- {', '.join(c.inputs)}" if c.inputs else ""
        click.echo(f"  {c.kind:<9} {name} ({c.config.type}){arrow}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins(as_json: bool) -> None:
    """List installed plugins and the component types, notification channels, optimizer
    actions and dashboard widgets each provides."""
    registry = _registry()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "plugin": p.name,
                        "distribution": p.distribution,
                        "version": p.version,
                        "types": [
                            {"kind": t.kind, "type": t.name, "description": t.description}
                            for t in p.types
                        ],
                        "channels": [
                            {"type": c.name, "description": c.description} for c in p.channels
                        ],
                        "actions": [
                            {"type": a.name, "description": a.description} for a in p.actions
                        ],
                        "widgets": [
                            {"type": w.name, "description": w.description} for w in p.widgets
                        ],
                    }
                    for p in registry.plugins
                ],
                indent=2,
            )
        )
        return
    for p in registry.plugins:
        click.echo(f"{p.name}  ({p.distribution} {p.version})".rstrip())
        for t in p.types:
            click.echo(f"    {t.kind:<9} {t.name:<20} {t.description}")
        for c in p.channels:
            click.echo(f"    {'channel':<9} {c.name:<20} {c.description}")
        for a in p.actions:
            click.echo(f"    {'action':<9} {a.name:<20} {a.description}")
        for w in p.widgets:
            click.echo(f"    {'widget':<9} {w.name:<20} {w.description}")
    for name, error in registry.failed.items():
        click.echo(f"{name}  FAILED TO LOAD: {error}")


def _interval(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"must be longer than zero, got {value!r}")
    return seconds


@cli.command()
@click.argument("config", required=False, type=click.Path(path_type=Path))
@click.option(
    "--url",
    help="the control API's base URL, e.g. http://127.0.0.1:8686 (default: from CONFIG's "
    "<data_dir>/api.json, else ./.revopipe/api.json, else http://127.0.0.1:8686)",
)
@click.option(
    "--interval",
    default="1s",
    show_default=True,
    callback=_interval,
    help="time between polls; rates are computed over it",
)
@click.option("--once", is_flag=True, help="print one frame (two polls an interval apart) and exit")
@click.option("--json", "as_json", is_flag=True, help="print frames as JSON (one per line)")
def top(config: Path | None, url: str | None, interval: float, once: bool, as_json: bool) -> None:
    """Live view of a running pipeline's components and their rates.

    Reads the control API of a pipeline started with `revopipe run CONFIG --api
    127.0.0.1:0` (or `api = "127.0.0.1:8686"` under [pipeline]). Press q or Ctrl-C to quit.
    """
    # Imported here: rich, httpx and aiohttp are only loaded for this command.
    from revopipe.top import run_top

    sys.exit(run_top(config, url, interval, once=once, as_json=as_json))


def main() -> None:
    cli()
