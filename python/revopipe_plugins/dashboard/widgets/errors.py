"""`errors`: request and error rates by route and status class (2xx/4xx/5xx)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, ClassVar

from revopipe.widgets import SeriesView, Widget, WidgetConfig
from revopipe_plugins.dashboard.widgets.base import clean, layout, line

BASE_RATE = "http.server.request.duration.rate"
CLASSES = ("2xx", "3xx", "4xx", "5xx")


def status_class(tags: Mapping[str, str]) -> str:
    cls = tags.get("http.response.status_class")
    if cls:
        return cls
    code = tags.get("http.response.status_code", "")
    return f"{code[0]}xx" if code[:1].isdigit() else "other"


class ErrorsWidget(Widget[WidgetConfig]):
    type_name = "errors"
    title = "Errors"
    description = "request rate by route and status class, and the error ratio over time"
    default_series: ClassVar[tuple[str, ...]] = (BASE_RATE,)

    async def data(self, params: Mapping[str, str]) -> dict[str, Any]:
        name = self.config.series[0] if self.config.series else BASE_RATE
        series = self.source.series(name, self.config.tags or None)
        latest: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        over_time: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
        for s in series:
            tags = s.tag_dict
            cls = status_class(tags)
            route = tags.get("http.route", "(none)")
            if s.last is not None and s.last == s.last:
                latest[route][cls] += s.last
            for t, v in zip(s.times, s.values, strict=True):
                if v == v:
                    over_time[cls][t] += v
        rows = []
        for route, by in sorted(latest.items(), key=lambda kv: -sum(kv[1].values())):
            total = sum(by.values())
            row: dict[str, Any] = {"route": route, "total": clean(total, 3)}
            for c in CLASSES:
                row[c] = clean(by.get(c, 0.0), 3)
            row["error_ratio"] = clean(by.get("5xx", 0.0) / total, 4) if total > 0 else None
            rows.append(row)
        times = sorted({t for d in over_time.values() for t in d})
        traces = []
        for c in ("4xx", "5xx"):
            ratio = []
            for t in times:
                total = sum(d.get(t, 0.0) for d in over_time.values())
                ratio.append(clean(over_time[c].get(t, 0.0) / total * 100, 3) if total else None)
            traces.append(line(f"{c} %", times, ratio))
        all_total = sum(r["total"] or 0 for r in rows)
        all_5xx = sum(r["5xx"] or 0 for r in rows)
        out: dict[str, Any] = {
            "routes": rows,
            "cards": [
                {
                    "label": "5xx ratio",
                    "value": clean(all_5xx / all_total * 100, 2) if all_total else None,
                    "unit": "%",
                    "status": "unknown"
                    if not all_total
                    else "unhealthy"
                    if all_5xx / all_total > 0.05
                    else "degraded"
                    if all_5xx / all_total > 0.01
                    else "healthy",
                }
            ],
            "table": {
                "columns": [
                    {"key": "route", "label": "Route"},
                    {"key": "2xx", "label": "2xx/s"},
                    {"key": "4xx", "label": "4xx/s"},
                    {"key": "5xx", "label": "5xx/s"},
                    {"key": "error_ratio", "label": "5xx ratio"},
                ],
                "rows": rows,
            },
            "figure": {
                "data": traces,
                "layout": layout(yaxis={"title": {"text": "%"}, "rangemode": "tozero"}),
            },
        }
        if not rows:
            out["empty"] = f"no {name} windows yet"
            del out["figure"]
        return out


_ = SeriesView
