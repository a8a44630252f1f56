"""The recent points of every series the optimizer watches, bounded in length and count.

Gauges are kept as they come. Counters arrive cumulative (the `internal` and `app` sources
report totals), so each new point is stored as the per-second rate since the previous one,
a reset counting from zero: every detector then reads "how fast", whatever the source.
"""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from revopipe.actions import Series
from revopipe.batch import MetricBatch
from revopipe.events import MetricKind, Tags

SeriesKey = tuple[str, Tags]


@dataclass(slots=True)
class _Points:
    counter: bool
    times: deque[float]
    values: deque[float]
    last_raw: tuple[float, float] | None = None
    """A counter's previous (time, cumulative value), to turn totals into rates."""
    seen: int = field(default=0)


class SeriesStore:
    """Implements `revopipe.actions.MetricView` over the last `history` points of up to
    `max_series` series whose names match `patterns` (fnmatch globs)."""

    def __init__(self, patterns: Iterable[str], history: int, max_series: int) -> None:
        self.patterns = tuple(patterns)
        self.history = history
        self.max_series = max_series
        self.overflow = 0
        """Points of new series refused because `max_series` were held."""
        self._series: dict[SeriesKey, _Points] = {}
        self._wanted: dict[str, bool] = {}
        self._by_name: dict[str, list[SeriesKey]] = {}

    def __len__(self) -> int:
        return len(self._series)

    def wants(self, name: str) -> bool:
        hit = self._wanted.get(name)
        if hit is None:
            hit = any(fnmatch.fnmatchcase(name, p) for p in self.patterns)
            self._wanted[name] = hit
        return hit

    def ingest(self, metrics: MetricBatch) -> None:
        for i, name in enumerate(metrics.names):
            if not self.wants(name):
                continue
            kind = metrics.kinds[i]
            if kind == MetricKind.HISTOGRAM or kind == MetricKind.SET:
                continue  # per-observation rows: the optimizer reads windowed aggregates
            self.add(
                name,
                metrics.tags[i],
                metrics.timestamps[i] / 1e9,
                float(metrics.values[i]),
                counter=kind == MetricKind.COUNTER,
            )

    def add(self, name: str, tags: Tags, t: float, value: float, *, counter: bool = False) -> None:
        key = (name, tags)
        pts = self._series.get(key)
        if pts is None:
            if len(self._series) >= self.max_series:
                self.overflow += 1
                return
            pts = _Points(counter, deque(maxlen=self.history), deque(maxlen=self.history))
            self._series[key] = pts
            self._by_name.setdefault(name, []).append(key)
        if pts.times and t <= pts.times[-1]:
            return  # a repeat or an out-of-order point: keep times strictly increasing
        if pts.counter:
            last, pts.last_raw = pts.last_raw, (t, value)
            if last is None or t <= last[0]:
                return
            increase = value - last[1] if value >= last[1] else value
            value = increase / (t - last[0])
        pts.times.append(t)
        pts.values.append(value)
        pts.seen += 1

    # -- MetricView -----------------------------------------------------------------

    def select(self, name: str, tags: Mapping[str, str] | None = None) -> list[Series]:
        out = []
        for key in self._by_name.get(name, ()):
            if tags and not _has_tags(key[1], tags):
                continue
            pts = self._series[key]
            out.append(Series(key[0], key[1], tuple(pts.times), tuple(pts.values)))
        return out

    def mean(
        self, name: str, tags: Mapping[str, str] | None, since: float, until: float
    ) -> float | None:
        total = 0.0
        n = 0
        for key in self._by_name.get(name, ()):
            if tags and not _has_tags(key[1], tags):
                continue
            pts = self._series[key]
            for t, v in zip(pts.times, pts.values, strict=True):
                if since <= t < until:
                    total += v
                    n += 1
        return total / n if n else None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def select_glob(self, pattern: str, tags: Mapping[str, str] | None = None) -> list[Series]:
        """Every series whose name matches the fnmatch `pattern`."""
        out: list[Series] = []
        for name in self._by_name:
            if fnmatch.fnmatchcase(name, pattern):
                out.extend(self.select(name, tags))
        return out


def _has_tags(tags: Tags, wanted: Mapping[str, str]) -> bool:
    d = dict(tags)
    return all(d.get(k) == v for k, v in wanted.items())


def series_label(name: str, tags: Tags) -> str:
    """`name{k="v",...}`, the way people read a series."""
    if not tags:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in tags) + "}"
