"""A `Frame` as rich renderables (the table `revopipe top` shows) or as JSON."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from revopipe.top.rates import Frame, Row

NONE = "—"
_HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "bold red"}
_KIND_ORDER = {"source": 0, "processor": 1, "sink": 2}


def fmt_rate(value: float | None) -> str:
    """'—' before two polls, else events/s with a k/M/G suffix: '0', '12.5', '3.40k'."""
    if value is None:
        return NONE
    if value == 0:
        return "0"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.2f}{suffix}"
    return f"{value:.1f}"


def fmt_count(value: int) -> str:
    return f"{value:,}"


def fmt_uptime(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h{m:02d}m"
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _queue(row: Row) -> Text:
    if row.queue is None:
        return Text(NONE, style="dim")
    depth, cap = row.queue
    # a full inbox means this component is the bottleneck (upstream blocks or drops)
    style = "bold red" if cap and depth >= cap else "yellow" if cap and depth * 2 >= cap else ""
    return Text(f"{depth}/{cap}", style=style)


def _rate(value: float | None) -> Text:
    return Text(fmt_rate(value), style="dim" if value is None else "")


def _counter(value: int, style: str) -> Text:
    return Text(fmt_count(value), style=style if value else "dim")


def sorted_rows(rows: list[Row]) -> list[Row]:
    """Sources, then processors, then sinks; by name within each."""
    return sorted(rows, key=lambda r: (_KIND_ORDER.get(r.kind, 3), r.name))


def header(frame: Frame, *, live: bool = False) -> Text:
    t = frame.totals
    text = Text()
    text.append("revopipe top", style="bold")
    text.append(f"  {frame.name}", style="bold cyan")
    if frame.version:
        text.append(f"  v{frame.version}", style="dim")
    text.append(f"  up {fmt_uptime(frame.uptime)}")
    text.append(f"  {frame.url}", style="dim")
    if frame.interval is not None:
        text.append(f"  rates over {frame.interval:.1f}s", style="dim")
    if frame.draining:
        text.append("  DRAINING", style="bold yellow")
    text.append("\n")
    text.append(f"in {fmt_rate(t.ingest_rate)} ev/s")
    text.append(f"  out {fmt_rate(t.delivered_rate)} ev/s")
    text.append("  errors ")
    text.append(fmt_count(t.errors), style="bold red" if t.errors else "")
    text.append("  dropped ")
    text.append(fmt_count(t.dropped), style="bold red" if t.dropped else "")
    text.append(f"  restarts {fmt_count(t.restarts)}")
    text.append("  healthy ")
    text.append(
        f"{t.healthy}/{t.components}", style="green" if t.healthy == t.components else "yellow"
    )
    if frame.error:
        text.append(f"\nDISCONNECTED: {frame.error}", style="bold red")
    if live:
        text.append("\nq or Ctrl-C to quit", style="dim")
    return text


def table(frame: Frame) -> Table:
    tbl = Table(box=None, header_style="bold", pad_edge=False, expand=False)
    tbl.add_column("component", no_wrap=True)
    tbl.add_column("kind", no_wrap=True)
    tbl.add_column("type", no_wrap=True)
    tbl.add_column("health", no_wrap=True)
    for name in ("in/s", "out/s", "errors", "dropped", "restarts", "queue"):
        tbl.add_column(name, justify="right", no_wrap=True)
    for r in sorted_rows(frame.rows):
        tbl.add_row(
            r.name,
            r.kind,
            r.type,
            Text(r.health, style=_HEALTH_STYLE.get(r.health, "")),
            _rate(r.in_rate),
            _rate(r.out_rate),
            _counter(r.errors, "bold red"),
            _counter(r.dropped, "bold red"),
            _counter(r.restarts, "yellow"),
            _queue(r),
        )
    return tbl


def render(frame: Frame, *, live: bool = False) -> RenderableType:
    parts: list[RenderableType] = [header(frame, live=live), Text(""), table(frame)]
    reasons = [r for r in sorted_rows(frame.rows) if r.reason and r.health != "healthy"]
    if reasons:
        parts.append(Text(""))
        for r in reasons:
            parts.append(Text(f"{r.name}: {r.reason}", style=_HEALTH_STYLE.get(r.health, "")))
    return Group(*parts)


def frame_to_json(frame: Frame) -> dict[str, Any]:
    """The frame as plain data (`--json`): rates in events/s, null before two polls."""
    out = asdict(frame)
    out["rows"] = [asdict(r) for r in sorted_rows(frame.rows)]
    for r in out["rows"]:
        q = r.pop("queue")
        r["queue"] = None if q is None else {"depth": q[0], "capacity": q[1]}
    out["components"] = out.pop("rows")
    return out
