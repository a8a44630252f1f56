"""`revopipe history CONFIG`: what the pipeline's sqlite sink has stored."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from revopipe.config import ConfigInvalid, parse_duration
from revopipe_plugins.sqlite.config import NS, tier_label
from revopipe_plugins.sqlite.query import History, HistoryError, TagMatcher

EXIT_INVALID = 2


def _duration_ns(text: str, option: str) -> int:
    try:
        return round(parse_duration(text) * NS)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _when(ts_ns: int) -> str:
    """Local time, to the millisecond."""
    return datetime.fromtimestamp(ts_ns / NS).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _table(*columns: str) -> Table:
    # Fold rather than truncate: a cut-off metric name or tag is useless.
    table = Table()
    for c in columns:
        table.add_column(c, overflow="fold")
    return table


def _num(x: float | None) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    return f"{x:.6g}"


def _tags(tags: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{k}={v}" for k, v in tags)


@click.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--sink", help="which sqlite sink, when the pipeline has several")
@click.option("--metric", help="a metric name (or glob, e.g. 'system.cpu.*'): show its samples")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="MATCHER",
    help="only series whose tags match: key=value, key!=value, key=~regex, key!~regex",
)
@click.option("--since", default="1h", show_default=True, help="how far back, e.g. '15m', '7d'")
@click.option("--step", help="one sample per step, e.g. '1m' (picks the rollup tier to read)")
@click.option("--source", help="read this source ('raw', '1m', ...) instead of choosing")
@click.option(
    "--percentiles",
    "qs",
    metavar="Q,Q,...",
    help="with --metric: percentiles of its histograms over the range, e.g. '50,90,99'",
)
@click.option("--events", "show_events", is_flag=True, help="list stored events instead")
@click.option("--type", "types", multiple=True, help="with --events: only this event type")
@click.option("--limit", default=50, show_default=True, help="rows shown per series / events")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def history(
    config: Path,
    sink: str | None,
    metric: str | None,
    tags: tuple[str, ...],
    since: str,
    step: str | None,
    source: str | None,
    qs: str | None,
    show_events: bool,
    types: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """Show the history kept by CONFIG's sqlite sink: its metrics, a metric's samples
    (--metric), histogram percentiles (--percentiles) or events (--events)."""
    since_ns = _duration_ns(since, "--since")
    step_ns = _duration_ns(step, "--step") if step else None
    try:
        matchers = [TagMatcher.parse(t) for t in tags]
        percentiles = [float(q) for q in qs.split(",")] if qs else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        h = History.for_pipeline(config, sink)
    except ConfigInvalid as exc:
        click.echo(exc.render(), err=True)
        sys.exit(EXIT_INVALID)
    except HistoryError as exc:
        raise click.ClickException(str(exc)) from None
    console = Console(soft_wrap=True)
    with h:
        start = h.now_ns() - since_ns
        try:
            if show_events:
                _events(h, console, list(types) or None, start, limit, as_json)
            elif metric is None:
                _overview(h, console, as_json)
            elif percentiles is not None:
                _percentiles(h, console, metric, matchers, start, percentiles, source, as_json)
            else:
                _samples(h, console, metric, matchers, start, step_ns, source, limit, as_json)
        except HistoryError as exc:
            raise click.ClickException(str(exc)) from None


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _overview(h: History, console: Console, as_json: bool) -> None:
    series = h.series()
    latest = {x.series.id: x for x in h.latest()}
    sources = h.sources()
    if as_json:
        _print_json(
            {
                "path": str(h.path),
                "sources": [
                    {"source": s.label, "window_ns": s.window_ns, "retention_ns": s.retention_ns}
                    for s in sources
                ],
                "series": [
                    {
                        **s.to_dict(),
                        "latest": latest[s.id].value if s.id in latest else None,
                        "latest_ts_ns": latest[s.id].ts_ns if s.id in latest else None,
                    }
                    for s in series
                ],
                "event_types": h.event_types(),
            }
        )
        return
    kept = ", ".join(
        f"{s.label} for {tier_label(s.retention_ns) if s.retention_ns else 'ever'}" for s in sources
    )
    console.print(f"{h.path}: {len(series)} series; keeps {kept}")
    table = _table("metric", "tags", "kind", "unit", "latest", "at")
    for s in series:
        x = latest.get(s.id)
        table.add_row(
            s.name,
            _tags(s.tags),
            s.kind.label,
            s.unit,
            _num(x.value) if x else "",
            _when(x.ts_ns) if x else "",
        )
    console.print(table)
    types = h.event_types()
    if types:
        console.print("events: " + ", ".join(types) + " (see --events)")


def _samples(
    h: History,
    console: Console,
    metric: str,
    matchers: list[TagMatcher],
    start: int,
    step_ns: int | None,
    source: str | None,
    limit: int,
    as_json: bool,
) -> None:
    results = h.points(metric, matchers, start_ns=start, step_ns=step_ns, source=source)
    if as_json:
        _print_json([r.to_dict() for r in results])
        return
    if not results:
        console.print(f"no samples of {metric!r} in that range")
        return
    for r in results:
        step = f", step {tier_label(r.step_ns)}" if r.step_ns else ""
        console.print(
            f"{r.series.name} {{{_tags(r.series.tags)}}} ({r.series.kind.label}, "
            f"{r.series.unit}) from {r.source}{step}: {len(r.samples)} "
            + ("sample" if len(r.samples) == 1 else "samples")
        )
        table = _table("time", "value", "count", "min", "max", "increase")
        for s in r.samples[-limit:]:
            table.add_row(
                _when(s.ts_ns),
                _num(s.value),
                str(s.count),
                _num(s.min),
                _num(s.max),
                _num(s.increase),
            )
        console.print(table)


def _percentiles(
    h: History,
    console: Console,
    metric: str,
    matchers: list[TagMatcher],
    start: int,
    qs: list[float],
    source: str | None,
    as_json: bool,
) -> None:
    results = h.percentiles(metric, matchers, start_ns=start, qs=qs, merge=False, source=source)
    if as_json:
        _print_json([r.to_dict() for r in results])
        return
    if not results:
        console.print(f"no histograms of {metric!r} in that range")
        return
    table = _table("metric", "tags", "source", "count", "min", *(f"p{q:g}" for q in qs), "max")
    for r in results:
        s = r.series[0]
        table.add_row(
            s.name,
            _tags(s.tags),
            r.source,
            str(r.count),
            _num(r.min),
            *(_num(r.percentiles[q]) for q in qs),
            _num(r.max),
        )
    console.print(table)


def _events(
    h: History,
    console: Console,
    types: list[str] | None,
    start: int,
    limit: int,
    as_json: bool,
) -> None:
    events = h.events(types, start_ns=start, limit=limit)
    if as_json:
        _print_json([e.to_dict() for e in events])
        return
    if not events:
        console.print("no events in that range")
        return
    table = _table("time", "type", "event")
    for e in events:
        data = {k: v for k, v in e.data.items() if k != "type"}
        table.add_row(_when(e.ts_ns), e.type, json.dumps(data, default=str))
    console.print(table)
