"""`api`: per-route throughput and p50/p95/p99 over time, from the `aggregate`
processor's windows of `http.server.request.duration`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, ClassVar

from revopipe.widgets import SeriesView, Widget, WidgetConfig
from revopipe_plugins.dashboard.widgets.base import MAX_TRACES, clean, layout, line

BASE = "http.server.request.duration"
ROUTE = "http.route"
QUANTILES = ("p50", "p95", "p99")


def by_route(series: list[SeriesView]) -> dict[str, list[SeriesView]]:
    out: dict[str, list[SeriesView]] = defaultdict(list)
    for s in series:
        out[s.tag_dict.get(ROUTE, "(none)")].append(s)
    return out


def summed(series: list[SeriesView]) -> dict[float, float]:
    """Per window end: the sum over the series (methods and status classes of a route)."""
    total: dict[float, float] = defaultdict(float)
    for s in series:
        for t, v in zip(s.times, s.values, strict=True):
            if v == v:  # not NaN
                total[t] += v
    return dict(sorted(total.items()))


def weighted(values: list[SeriesView], weights: list[SeriesView]) -> dict[float, float]:
    """Per window end: the request-weighted mean of a percentile over a route's series.
    An approximation (percentiles do not average); exact figures over any range are in
    the history (`revopipe history percentiles`)."""
    w_of = {(s.tags, t): v for s in weights for t, v in zip(s.times, s.values, strict=True)}
    num: dict[float, float] = defaultdict(float)
    den: dict[float, float] = defaultdict(float)
    for s in values:
        for t, v in zip(s.times, s.values, strict=True):
            if v != v:
                continue
            w = w_of.get((_strip(s.tags), t), 1.0)
            num[t] += v * w
            den[t] += w
    return {t: num[t] / den[t] for t in sorted(num) if den[t] > 0}


def _strip(tags: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tags


class ApiWidget(Widget[WidgetConfig]):
    type_name = "api"
    title = "API performance"
    description = "per-route throughput and p50/p95/p99 latency over time"
    default_series: ClassVar[tuple[str, ...]] = (
        f"{BASE}.rate",
        f"{BASE}.count",
        *(f"{BASE}.{q}" for q in QUANTILES),
    )

    def _base(self) -> str:
        for p in self.config.series:
            if p.endswith(".rate"):
                return p.removesuffix(".rate")
        return BASE

    async def data(self, params: Mapping[str, str]) -> dict[str, Any]:
        base = self._base()
        tags = self.config.tags or None
        rates = by_route(self.source.series(f"{base}.rate", tags))
        counts = by_route(self.source.series(f"{base}.count", tags))
        qs = {q: by_route(self.source.series(f"{base}.{q}", tags)) for q in QUANTILES}
        rows = []
        traces: list[dict[str, Any]] = []
        routes = sorted(rates, key=lambda r: -(_last(summed(rates[r])) or 0.0))
        for i, route in enumerate(routes):
            rate = summed(rates[route])
            row: dict[str, Any] = {"route": route, "rate": clean(_last(rate), 3)}
            for q in QUANTILES:
                series = weighted(qs[q].get(route, []), counts.get(route, []))
                ms = {t: v * 1000 for t, v in series.items()}
                row[q] = clean(_last(ms), 2)
                if i < MAX_TRACES:
                    traces.append(
                        line(
                            f"{route} {q}",
                            list(ms),
                            list(ms.values()),
                            yaxis="y",
                            legendgroup=route,
                        )
                    )
            if i < MAX_TRACES:
                traces.append(
                    line(
                        f"{route} req/s",
                        list(rate),
                        list(rate.values()),
                        yaxis="y2",
                        legendgroup=route,
                        line={"dash": "dot"},
                    )
                )
            rows.append(row)
        out: dict[str, Any] = {
            "routes": rows,
            "table": {
                "columns": [
                    {"key": "route", "label": "Route"},
                    {"key": "rate", "label": "req/s"},
                    {"key": "p50", "label": "p50 ms"},
                    {"key": "p95", "label": "p95 ms"},
                    {"key": "p99", "label": "p99 ms"},
                ],
                "rows": rows,
            },
            "figure": {
                "data": traces,
                "layout": layout(
                    yaxis={"title": {"text": "ms"}, "domain": [0.4, 1.0], "rangemode": "tozero"},
                    yaxis2={
                        "title": {"text": "req/s"},
                        "domain": [0.0, 0.3],
                        "rangemode": "tozero",
                    },
                ),
            },
        }
        if not rows:
            out["empty"] = (
                f"no {base} windows yet: feed this dashboard from an `aggregate` processor "
                "over an instrumented service (`app` source)"
            )
        return out


def _last(d: dict[float, float]) -> float | None:
    return d[max(d)] if d else None
