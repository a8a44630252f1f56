"""`trends`: hours to days from the `sqlite` history, read from the rollup tier that suits
the range so a week of many series loads fast."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import anyio
from pydantic import Field, field_validator

from revopipe.widgets import Widget, WidgetConfig, WidgetError
from revopipe_plugins.dashboard.widgets.base import clean, layout

RANGES: dict[str, tuple[int, int]] = {
    # range -> (seconds, step seconds): the step picks the tier (raw, 1m, 1h) so that no
    # range reads more than ~1500 windows per series.
    "1h": (3600, 15),
    "6h": (6 * 3600, 60),
    "24h": (24 * 3600, 300),
    "7d": (7 * 86400, 3600),
}
NS = 1_000_000_000


class TrendsConfig(WidgetConfig):
    range: str = Field(default="6h", description="range shown first: 1h, 6h, 24h or 7d")
    max_series: int = Field(default=100, ge=1, le=1000, description="series drawn at most")

    @field_validator("range")
    @classmethod
    def _known_range(cls, value: str) -> str:
        if value not in RANGES:
            raise ValueError(f"{value!r} is not one of {', '.join(RANGES)}")
        return value

    @field_validator("series")
    @classmethod
    def _matchers(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                parse_series(entry)
            except WidgetError as exc:
                raise ValueError(exc.message) from None
        return value


class TrendsWidget(Widget[TrendsConfig]):
    type_name = "trends"
    title = "Trends"
    description = "hours to days from the SQLite history, with a selectable range"
    Config = TrendsConfig
    default_series: ClassVar[tuple[str, ...]] = (
        # the totals: a tag matched with '' is a tag the series does not have
        'system.cpu.utilization{cpu.mode="", cpu.logical_number=""}',
        'system.memory.utilization{system.memory.state="used"}',
        "http.server.request.duration.p99",
    )
    default_refresh = 30.0
    polls = True

    def patterns(self) -> list[str]:
        return []  # read from the history, not held in memory

    async def data(self, params: Mapping[str, str]) -> dict[str, Any]:
        rng = params.get("range") or self.config.range
        if rng not in RANGES:
            raise WidgetError(f"range {rng!r} is not one of {', '.join(RANGES)}")
        path = self.source.history_path
        base: dict[str, Any] = {"ranges": list(RANGES), "range": rng}
        if path is None:
            return {
                **base,
                "series": [],
                "empty": "no history: set the dashboard's `history` to the name of a `sqlite` sink",
            }
        names = self.config.series or list(self.default_series)
        tags = dict(self.config.tags)
        limit = self.config.max_series
        result = await anyio.to_thread.run_sync(_read, path, names, tags, rng, limit)
        return {**base, **result}


def parse_series(entry: str) -> tuple[str, list[str]]:
    """'name{a="x", b=~"y.*"}' -> ('name', ['a=x', 'b=~y.*']): the history's matchers
    (a value '' matches a missing tag)."""
    name, brace, rest = entry.partition("{")
    if not brace:
        return entry.strip(), []
    body = rest.rstrip().removesuffix("}")
    out = []
    for part in body.split(","):
        part = part.strip()
        if not part:
            continue
        m = _MATCHER.fullmatch(part)
        if m is None:
            raise WidgetError(
                f"series {entry!r}: {part!r} is not one of " + 'key="value", key!="value", '
                'key=~"regex" or key!~"regex"'
            )
        out.append(f"{m.group(1)}{m.group(2)}{m.group(3)}")
    return name.strip(), out


_MATCHER = re.compile(r'([^=!~\s]+)\s*(=~|!~|!=|=)\s*"(.*)"')


def _read(
    path: Path, names: list[str], tags: dict[str, str], rng: str, limit: int
) -> dict[str, Any]:
    from revopipe_plugins.sqlite.query import History, HistoryError

    span, step = RANGES[rng]
    try:
        history = History(path)
    except (HistoryError, OSError) as exc:
        return {"series": [], "empty": f"history {path} cannot be read yet: {exc}"}
    with history:
        end = history.now_ns()
        start = end - span * NS
        series: list[dict[str, Any]] = []
        source = ""
        for entry in names:
            name, matchers = parse_series(entry)
            matchers += [f"{k}={v}" for k, v in tags.items()]
            for ss in history.points(name, matchers or None, start_ns=start, step_ns=step * NS):
                if len(series) >= limit:
                    break
                source = ss.source
                series.append(
                    {
                        "name": ss.series.name,
                        "tags": ss.series.tag_dict,
                        "unit": ss.series.unit,
                        "x": [s.ts_ns // 1_000_000 for s in ss.samples],
                        "y": [clean(s.value) for s in ss.samples],
                    }
                )
    traces = [
        {
            "type": "scatter",
            # a series with a few windows only would draw no line at all
            "mode": "lines" if len(s["x"]) > 20 else "lines+markers",
            "name": s["name"]
            + ("{" + ",".join(f"{k}={v}" for k, v in s["tags"].items()) + "}" if s["tags"] else ""),
            "x": s["x"],
            "y": s["y"],
        }
        for s in series
    ]
    out: dict[str, Any] = {
        "source": source,
        "step_seconds": step,
        "series": series,
        "figure": {
            "data": traces,
            # the whole range, also when the history is younger than it
            "layout": layout(xaxis={"type": "date", "range": [start // 10**6, end // 10**6]}),
        },
    }
    if not series:
        out["empty"] = f"no stored points of {', '.join(names)} in the last {rng}"
    return out
