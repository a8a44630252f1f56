"""Two polls of the API -> one frame of per-component rates and pipeline totals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from revopipe.top.client import Sample


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    kind: str
    type: str
    health: str
    reason: str
    events_in: int
    events_out: int
    in_rate: float | None
    """events/s into the component over the last interval; None until two polls exist,
    and for a source (as `out_rate` is for a sink)."""
    out_rate: float | None
    errors: int
    dropped: int
    retries: int
    restarts: int
    dead_lettered: int
    queue: tuple[int, int] | None
    """(batches waiting, capacity) of a processor's or sink's inbox."""


@dataclass(frozen=True, slots=True)
class Totals:
    ingest_rate: float | None
    """events/s the sources emitted."""
    delivered_rate: float | None
    """events/s the sinks received."""
    errors: int
    dropped: int
    restarts: int
    healthy: int
    components: int


@dataclass(frozen=True, slots=True)
class Frame:
    name: str
    version: str
    url: str
    uptime: float
    interval: float | None
    """Seconds between the two polls the rates come from (server clock)."""
    draining: bool
    rows: list[Row]
    totals: Totals
    error: str | None = None
    """Set when the latest poll failed: the rows are the last ones seen."""


def rate(before: int | None, after: int, seconds: float | None) -> float | None:
    """Events/s between two readings of a cumulative counter; None when there is no
    earlier reading or the counter went backwards (the pipeline restarted)."""
    if before is None or seconds is None or seconds <= 0 or after < before:
        return None
    return (after - before) / seconds


def _int(c: Mapping[str, Any], key: str) -> int:
    v = c.get(key, 0)
    return v if isinstance(v, int) else 0


def _rate(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], key: str, seconds: float | None
) -> float | None:
    return rate(None if old is None else _int(old, key), _int(new, key), seconds)


def _queue(c: Mapping[str, Any]) -> tuple[int, int] | None:
    q = c.get("queue")
    if isinstance(q, Mapping) and isinstance(q.get("depth"), int):
        cap = q.get("capacity")
        return q["depth"], cap if isinstance(cap, int) else 0
    return None


def build_frame(previous: Sample | None, current: Sample, url: str) -> Frame:
    """Rates from the counters' growth between `previous` and `current`, over the
    server's own clock (request latency does not skew them)."""
    if previous is not None and previous.pipeline.get("pid") != current.pipeline.get("pid"):
        previous = None  # another process answers now: its counters started over
    seconds = current.timestamp - previous.timestamp if previous is not None else None
    before = {c.get("name"): c for c in previous.components} if previous else {}
    rows = []
    for c in current.components:
        old = before.get(c.get("name"))
        kind = str(c.get("kind", ""))
        rows.append(
            Row(
                name=str(c.get("name", "?")),
                kind=kind,
                type=str(c.get("type", "")),
                health=str(c.get("health", "")),
                reason=str(c.get("reason", "")),
                events_in=_int(c, "events_in"),
                events_out=_int(c, "events_out"),
                # a source takes nothing in and a sink sends nothing on: n/a, not 0
                in_rate=None if kind == "source" else _rate(old, c, "events_in", seconds),
                out_rate=None if kind == "sink" else _rate(old, c, "events_out", seconds),
                errors=_int(c, "errors"),
                dropped=_int(c, "dropped"),
                retries=_int(c, "retries"),
                restarts=_int(c, "restarts"),
                dead_lettered=_int(c, "dead_lettered"),
                queue=_queue(c),
            )
        )
    p = current.pipeline
    uptime = p.get("uptime_seconds")
    return Frame(
        name=str(p.get("name", "")),
        version=str(p.get("version", "")),
        url=url,
        uptime=float(uptime) if isinstance(uptime, int | float) else 0.0,
        interval=seconds,
        draining=bool(p.get("draining", False)),
        rows=rows,
        totals=totals(rows),
    )


def _sum(rates: list[float | None]) -> float | None:
    known = [r for r in rates if r is not None]
    return sum(known) if known or not rates else None


def totals(rows: list[Row]) -> Totals:
    return Totals(
        ingest_rate=_sum([r.out_rate for r in rows if r.kind == "source"]),
        delivered_rate=_sum([r.in_rate for r in rows if r.kind == "sink"]),
        errors=sum(r.errors for r in rows),
        dropped=sum(r.dropped for r in rows),
        restarts=sum(r.restarts for r in rows),
        healthy=sum(1 for r in rows if r.health == "healthy"),
        components=len(rows),
    )
