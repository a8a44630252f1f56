"""Helpers the built-in widgets share: sparklines, plotly traces, status colours."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from revopipe.widgets import SeriesView, WidgetSource

SPARK_POINTS = 60
"""Points in a sparkline: a minute of 1 s readings, ten of 10 s windows."""
MAX_TRACES = 5
"""Routes drawn in a chart; the table lists them all."""


def spark(s: SeriesView | None, n: int = SPARK_POINTS, scale: float = 1.0) -> dict[str, list[Any]]:
    if s is None:
        return {"x": [], "y": []}
    return {
        "x": [round(t * 1000) for t in s.times[-n:]],
        "y": [clean(v * scale) for v in s.values[-n:]],
    }


def clean(v: float | None, digits: int = 6) -> float | None:
    """JSON has no NaN: a missing value is null (a gap in a chart)."""
    if v is None or not math.isfinite(v):
        return None
    return round(v, digits)


def status_of(ratio: float | None, degraded: float = 0.75, unhealthy: float = 0.9) -> str:
    if ratio is None:
        return "unknown"
    if ratio >= unhealthy:
        return "unhealthy"
    if ratio >= degraded:
        return "degraded"
    return "healthy"


def first_of(
    source: WidgetSource, names: Iterable[str], tags: Mapping[str, str] | None = None
) -> list[SeriesView]:
    """The series of the first name that has any: the raw name or its aggregated `.last`."""
    for name in names:
        found = source.series(name, tags)
        if found:
            return found
    return []


def with_suffixes(names: Sequence[str], suffixes: Sequence[str] = ("", ".last")) -> list[str]:
    return [n + s for n in names for s in suffixes]


def line(
    name: str, s_x: Sequence[float], s_y: Sequence[float | None], **extra: Any
) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": [round(t * 1000) for t in s_x],
        "y": list(s_y),
        **extra,
    }


def layout(**extra: Any) -> dict[str, Any]:
    """A compact plotly layout: dates on x, legend on top, no title (the card has one)."""
    out: dict[str, Any] = {
        "margin": {"l": 48, "r": 12, "t": 8, "b": 28},
        "xaxis": {"type": "date"},
        "legend": {"orientation": "h", "y": -0.15},
        "showlegend": True,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "uirevision": "keep",
    }
    out.update(extra)
    return out
