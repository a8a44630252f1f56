"""What the dashboard holds in memory: the recent points of the series its widgets show,
and the latest events. Bounded: at most `max_series` series of `points` points each, a
fixed number of events per type; the rest is counted, never kept."""

from __future__ import annotations

import fnmatch
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from revopipe.batch import Batch
from revopipe.events import Event, Health, Recommendation, Tags
from revopipe.widgets import SeriesView

EVENTS_KEPT = 200
"""Latest events held per type (alerts, recommendations, ...)."""


@dataclass(slots=True)
class _Ring:
    unit: str
    times: deque[float]
    values: deque[float]


@dataclass(slots=True)
class DashboardState:
    """The series and events the widgets read; `write` folds a batch in."""

    patterns: Sequence[str]
    max_series: int = 2000
    points: int = 300
    version: int = 0
    """Bumped by every batch that changed something: the stream skips widgets that only
    read the state when nothing changed."""
    overflow: int = 0
    """Points of series not held because `max_series` was reached."""
    _series: dict[tuple[str, Tags], _Ring] = field(default_factory=dict)
    _by_name: dict[str, list[tuple[str, Tags]]] = field(default_factory=dict)
    _wanted: dict[str, bool] = field(default_factory=dict)
    _events: dict[str, deque[Event]] = field(default_factory=dict)
    _recommendations: dict[str, Recommendation] = field(default_factory=dict)
    _health: dict[str, Health] = field(default_factory=dict)
    _regex: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        globs = [fnmatch.translate(p) for p in self.patterns]
        self._regex = re.compile("|".join(globs)) if globs else None

    def wants(self, name: str) -> bool:
        hit = self._wanted.get(name)
        if hit is None:
            hit = self._regex is not None and self._regex.match(name) is not None
            # The cache is keyed by metric name only, which a pipeline has few of.
            if len(self._wanted) < 100_000:
                self._wanted[name] = hit
        return hit

    def write(self, batch: Batch) -> bool:
        """Fold one batch in; True when anything a widget reads changed."""
        changed = False
        m = batch.metrics
        wants = self.wants
        for i, name in enumerate(m.names):
            if not wants(name):
                continue
            key = (name, m.tags[i])
            ring = self._series.get(key)
            if ring is None:
                if len(self._series) >= self.max_series:
                    self.overflow += 1
                    continue
                ring = _Ring(m.units[i], deque(maxlen=self.points), deque(maxlen=self.points))
                self._series[key] = ring
                self._by_name.setdefault(name, []).append(key)
            t = m.timestamps[i] / 1e9
            # Out-of-order points (two sources, a late window) replace nothing: the ring
            # stays sorted so a chart never draws backwards.
            if ring.times and t < ring.times[-1]:
                continue
            if ring.times and t == ring.times[-1]:
                ring.values[-1] = m.values[i]
            else:
                ring.times.append(t)
                ring.values.append(m.values[i])
            changed = True
        for e in batch.events:
            changed = True
            if isinstance(e, Health):
                self._health[e.subject] = e
            elif isinstance(e, Recommendation):
                rkey = e.key or e.title
                self._recommendations.pop(rkey, None)
                self._recommendations[rkey] = e
                while len(self._recommendations) > EVENTS_KEPT:
                    del self._recommendations[next(iter(self._recommendations))]
            else:
                q = self._events.get(e.type)
                if q is None:
                    q = self._events[e.type] = deque(maxlen=EVENTS_KEPT)
                q.append(e)
        if changed:
            self.version += 1
        return changed

    # -- reading (the WidgetSource side) ----------------------------------------------

    def series(self, pattern: str, tags: Mapping[str, str] | None = None) -> list[SeriesView]:
        if any(ch in pattern for ch in "*?["):
            names: Iterable[str] = sorted(
                n for n in self._by_name if fnmatch.fnmatchcase(n, pattern)
            )
        else:
            names = [pattern]
        out = []
        want = tuple((tags or {}).items())
        for name in names:
            for key in self._by_name.get(name, ()):
                tag_map = dict(key[1])
                if any(tag_map.get(k) != v for k, v in want):
                    continue
                ring = self._series[key]
                out.append(SeriesView(name, key[1], ring.unit, list(ring.times), list(ring.values)))
        return out

    def events(self, type_name: str) -> list[Event]:
        if type_name == Recommendation.type:
            return list(self._recommendations.values())
        if type_name == Health.type:
            return list(self._health.values())
        return list(self._events.get(type_name, ()))

    def health_events(self) -> Mapping[str, Health]:
        return dict(self._health)

    @property
    def series_count(self) -> int:
        return len(self._series)
