"""Reading the history a `sqlite` sink writes: for the dashboard, the CLI and scripts.

    from revopipe_plugins.sqlite.query import History

    with History.for_pipeline("pipeline.toml") as h:     # or History(".../history.db")
        h.metric_names()                                   # ['http.server.request.duration']
        h.series("system.cpu.utilization", {"cpu": "0"})   # matching series
        h.points("system.cpu.utilization", ["cpu=~0|1"],   # samples per series, from raw
                 start_ns=h.now_ns() - 3600 * 10**9,       # points or the rollup tier
                 step_ns=60 * 10**9)                       # that suits the step
        h.latest("system.memory.usage")                    # newest value per series
        h.percentiles("http.server.request.duration",      # exact, from stored HDRs
                      start_ns=..., qs=(50, 99))
        h.events("alert", start_ns=...)                    # alert history, spans, ...

The connection is read-only and WAL readers never block the writer, so a `History` can
stay open next to a running pipeline; every call reads one consistent snapshot. Methods
are thread-safe (one call at a time per instance); from async code, call them through
`anyio.to_thread.run_sync`.

Times are nanoseconds since the epoch; ranges are half-open `[start_ns, end_ns)`; a
rollup window or a histogram snapshot is in a range when it *starts* in it.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from revopipe import _core
from revopipe.events import MetricKind, Tags
from revopipe_plugins.sqlite.config import tier_label
from revopipe_plugins.sqlite.schema import BUCKET_NS, HistoryError, open_reader

__all__ = [
    "History",
    "HistoryError",
    "Latest",
    "PercentileWindow",
    "Percentiles",
    "Sample",
    "Series",
    "SeriesSamples",
    "Source",
    "StoredEvent",
    "TagFilter",
    "TagMatcher",
]

ONE_WINDOW = 1 << 62
"""An aggregator window wide enough to hold every stored time: merges everything."""
DEFAULT_QS = (50.0, 90.0, 95.0, 99.0, 99.9)

MatchOp = Literal["=", "!=", "=~", "!~"]
_OPS: dict[str, MatchOp] = {"=": "=", "!=": "!=", "=~": "=~", "!~": "!~"}
_MATCHER = re.compile(r"\s*([^=!~\s]+)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class TagMatcher:
    """A tag condition, as in PromQL: `key=value`, `key!=value`, `key=~regex`,
    `key!~regex` (regexes match the whole value). A missing tag has the value ''."""

    key: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_regex", re.compile(self.value))
            except re.error as exc:
                raise ValueError(f"tag matcher {self}: bad regex: {exc}") from None

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"

    @classmethod
    def parse(cls, text: str) -> TagMatcher:
        """'host=web-1', 'env!=dev', 'route=~/api/.*', 'status!~5..'."""
        m = _MATCHER.match(text)
        if m is None:
            raise ValueError(
                f"tag matcher {text!r}: expected key=value, key!=value, key=~regex or key!~regex"
            )
        return cls(m.group(1), _OPS[m.group(2)], m.group(3))

    def matches(self, tags: Mapping[str, str]) -> bool:
        actual = tags.get(self.key, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found


TagFilter = Mapping[str, str] | Sequence[TagMatcher | str] | None
"""Which series: a mapping of exact tag values, or matchers (TagMatcher or their text)."""


def _matchers(tags: TagFilter) -> list[TagMatcher]:
    if not tags:
        return []
    if isinstance(tags, Mapping):
        return [TagMatcher(str(k), "=", str(v)) for k, v in tags.items()]
    return [t if isinstance(t, TagMatcher) else TagMatcher.parse(t) for t in tags]


@dataclass(frozen=True, slots=True)
class Series:
    """One stored series: a metric name and its tags."""

    id: int
    name: str
    kind: MetricKind
    unit: str
    tags: Tags

    @property
    def tag_dict(self) -> dict[str, str]:
        return dict(self.tags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.label,
            "unit": self.unit,
            "tags": dict(self.tags),
        }


@dataclass(frozen=True, slots=True)
class Source:
    """Where samples come from: raw points (`window_ns` 0) or a rollup tier."""

    label: str
    window_ns: int
    retention_ns: int | None

    def covers(self, start_ns: int, now_ns: int) -> bool:
        return self.retention_ns is None or start_ns >= now_ns - self.retention_ns


@dataclass(frozen=True, slots=True)
class Sample:
    """A raw point (`count` 1) or a window's aggregate, stamped with the window start.

    `value` is the point's value; for a window, `last` for counters (cumulative totals)
    and the mean for every other kind. `increase` is the counter's increase over the
    window (resets handled); None for other kinds and raw points. count, sum, min and max
    cover finite values only (a window of only NaN has count 0)."""

    ts_ns: int
    value: float
    count: int
    sum: float
    min: float
    max: float
    last: float
    increase: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts_ns": self.ts_ns,
            "value": self.value,
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "last": self.last,
            "increase": self.increase,
        }


@dataclass(frozen=True, slots=True)
class SeriesSamples:
    series: Series
    source: str
    """'raw' or the rollup tier read ('1m', '1h', …)."""
    step_ns: int
    """The samples' spacing: 0 for raw points as stored, else the window of each."""
    samples: list[Sample]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.series.to_dict(),
            "source": self.source,
            "step_ns": self.step_ns,
            "samples": [s.to_dict() for s in self.samples],
        }


@dataclass(frozen=True, slots=True)
class Latest:
    """A series' newest finite value."""

    series: Series
    ts_ns: int
    value: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.series.to_dict(), "ts_ns": self.ts_ns, "value": self.value}


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Percentiles over a range, merged exactly from stored HdrHistograms."""

    series: tuple[Series, ...]
    """The series merged (one unless `merge=True` matched several)."""
    source: str
    count: int
    sum: float
    min: float
    max: float
    percentiles: dict[float, float]
    hdr: str | None
    """The merged histogram (base64 compressed HdrHistogram V2)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": [s.to_dict() for s in self.series],
            "source": self.source,
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "percentiles": {str(q): v for q, v in self.percentiles.items()},
        }


@dataclass(frozen=True, slots=True)
class PercentileWindow:
    start_ns: int
    count: int
    percentiles: dict[float, float]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    type: str
    ts_ns: int
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "ts_ns": self.ts_ns, "data": self.data}


class History:
    """A read-only view of one history database (see the module docs)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = Path(path)
        self.clock = clock
        self._conn = open_reader(self.path)
        self._conn.isolation_level = None
        self._lock = threading.Lock()

    @classmethod
    def for_pipeline(cls, config: str | Path, sink: str | None = None) -> History:
        """The history of the `sqlite` sink in a pipeline file (`sink` names it when
        there are several). A relative data_dir is taken from the current directory, as
        `revopipe run` does."""
        return cls(pipeline_database(config, sink))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def now_ns(self) -> int:
        return self.clock()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query of a call sees the same snapshot."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    # -- what is stored ---------------------------------------------------------------

    def sources(self) -> list[Source]:
        """Raw points first, then the rollup tiers, finest first."""
        with self._read() as c:
            return self._sources(c)

    def _sources(self, c: sqlite3.Connection) -> list[Source]:
        meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
        raw = meta.get("raw_retention_ns")
        out = [Source("raw", 0, int(raw) if raw is not None else None)]
        for w, keep in c.execute("SELECT window_ns, retention_ns FROM tiers ORDER BY window_ns"):
            out.append(Source(tier_label(w), int(w), int(keep)))
        return out

    def _digits(self, c: sqlite3.Connection) -> int:
        row = c.execute("SELECT value FROM meta WHERE key = 'significant_digits'").fetchone()
        return int(row[0]) if row else 3

    def metric_names(self, pattern: str | None = None) -> list[str]:
        """Stored metric names, sorted; `pattern` is a glob such as 'system.cpu.*'."""
        with self._read() as c:
            if pattern is None:
                rows = c.execute("SELECT DISTINCT name FROM series ORDER BY name")
            else:
                rows = c.execute(
                    "SELECT DISTINCT name FROM series WHERE name GLOB ? ORDER BY name", (pattern,)
                )
            return [r[0] for r in rows]

    def series(self, name: str | None = None, tags: TagFilter = None) -> list[Series]:
        """Series whose name equals `name` (or matches it as a glob when it holds `*`, `?`
        or `[`; None = every name) and whose tags satisfy `tags`."""
        with self._read() as c:
            return self._series(c, name, tags)

    def _series(self, c: sqlite3.Connection, name: str | None, tags: TagFilter) -> list[Series]:
        matchers = _matchers(tags)
        sql = "SELECT id, name, kind, unit, tags FROM series"
        args: tuple[str, ...] = ()
        if name is not None:
            glob = any(ch in name for ch in "*?[")
            sql += " WHERE name GLOB ?" if glob else " WHERE name = ?"
            args = (name,)
        out = []
        for sid, sname, kind, unit, tj in c.execute(sql + " ORDER BY name, tags", args):
            tag_map: dict[str, str] = json.loads(tj)
            if all(m.matches(tag_map) for m in matchers):
                pairs = tuple(sorted(tag_map.items()))
                out.append(Series(sid, sname, MetricKind(kind), unit, pairs))
        return out

    # -- choosing raw or a rollup tier ------------------------------------------------

    def choose_source(self, start_ns: int, step_ns: int | None = None) -> Source:
        """The source a query from `start_ns` at `step_ns` reads (see `_choose`)."""
        with self._read() as c:
            return self._choose(self._sources(c), start_ns, step_ns, None)

    def _choose(
        self, sources: list[Source], start_ns: int, step_ns: int | None, want: str | None
    ) -> Source:
        """With a step: the coarsest source whose window fits in the step and whose
        retention still covers `start_ns`; failing that, the finest coarser one that
        covers it. Without: the finest source that covers `start_ns`. If none covers
        it, the one kept longest. `want` ('raw', '1m', …) forces a source."""
        if want is not None:
            for s in sources:
                if s.label == want:
                    return s
            known = ", ".join(s.label for s in sources)
            raise HistoryError(f"no source {want!r} in {self.path}; it has {known}")
        now = self.clock()
        covering = [s for s in sources if s.covers(start_ns, now)]
        if step_ns is not None:
            fits = [s for s in covering if s.window_ns <= step_ns]
            if fits:
                return fits[-1]
        if covering:
            return covering[0]
        return max(sources, key=lambda s: s.retention_ns or 0)

    # -- samples ----------------------------------------------------------------------

    def points(
        self,
        name: str | None = None,
        tags: TagFilter = None,
        *,
        start_ns: int,
        end_ns: int | None = None,
        step_ns: int | None = None,
        source: str | None = None,
    ) -> list[SeriesSamples]:
        """Samples of every matching series in `[start_ns, end_ns)` (end: no limit).

        Without `step_ns`: raw points as stored if raw retention covers `start_ns`, else
        the windows of the finest tier that does. With `step_ns`: one sample per
        epoch-aligned step (rounded up to a whole number of the chosen tier's windows),
        read from the coarsest source that is fine enough (`choose_source`). `source`
        ('raw', '1m', …) overrides the choice."""
        if step_ns is not None and step_ns <= 0:
            raise ValueError(f"step_ns must be positive, got {step_ns}")
        end = end_ns if end_ns is not None else 2**63 - 1
        with self._read() as c:
            src = self._choose(self._sources(c), start_ns, step_ns, source)
            step = 0
            if step_ns is not None:
                w = max(src.window_ns, 1)
                step = -(-step_ns // w) * w
            out = []
            for s in self._series(c, name, tags):
                if src.window_ns == 0:
                    samples = self._raw_samples(c, s, start_ns, end, step)
                else:
                    samples = self._rollup_samples(c, s, src.window_ns, start_ns, end, step)
                if samples:
                    out.append(SeriesSamples(s, src.label, step or src.window_ns, samples))
            return out

    def _raw_rows(
        self, c: sqlite3.Connection, s: Series, start: int, end: int
    ) -> list[tuple[int, float | None]]:
        """A series' points in [start, end): one index seek per minute bucket (points
        are clustered by minute, then series), over the buckets that hold data."""
        # Two queries: min() and max() together would scan the table.
        (lo,) = c.execute("SELECT min(bucket) FROM points").fetchone()
        (hi,) = c.execute("SELECT max(bucket) FROM points").fetchone()
        if lo is None:
            return []
        first, last = max(lo, start // BUCKET_NS), min(hi, (end - 1) // BUCKET_NS)
        if first > last:
            return []
        return c.execute(
            "WITH RECURSIVE k(b) AS (SELECT ?1 UNION ALL SELECT b + 1 FROM k WHERE b < ?2) "
            "SELECT p.ts_ns, p.value FROM k CROSS JOIN points AS p "
            "WHERE p.bucket = k.b AND p.series_id = ?3 AND p.ts_ns >= ?4 AND p.ts_ns < ?5 "
            "ORDER BY p.ts_ns, p.seq",
            (first, last, s.id, start, end),
        ).fetchall()

    def _value_before(self, c: sqlite3.Connection, s: Series, ts: int) -> float | None:
        """The newest finite value of a series before `ts`, looking back at most a day."""
        (lo,) = c.execute("SELECT min(bucket) FROM points").fetchone()
        b = ts // BUCKET_NS
        stop = max(lo if lo is not None else b, b - 1440)
        while b >= stop:
            row = c.execute(
                "SELECT value FROM points WHERE bucket = ? AND series_id = ? AND ts_ns < ? "
                "AND value - value = 0 ORDER BY ts_ns DESC, seq DESC LIMIT 1",
                (b, s.id, ts),
            ).fetchone()
            if row is not None:
                return float(row[0])
            b -= 1
        return None

    def _raw_samples(
        self, c: sqlite3.Connection, s: Series, start: int, end: int, step: int
    ) -> list[Sample]:
        rows = self._raw_rows(c, s, start, end)
        if not step:
            return [Sample(t, _nan(v), 1, _nan(v), _nan(v), _nan(v), _nan(v)) for t, v in rows]
        counter = s.kind is MetricKind.COUNTER
        prev = self._value_before(c, s, start) if counter and rows else None
        buckets: dict[int, _Acc] = {}
        for t, v in rows:
            if v is None or not math.isfinite(v):
                continue
            inc: float | None = None
            if counter:
                inc = 0.0 if prev is None else (v - prev if v >= prev else v)
                prev = v
            b = t - t % step
            acc = buckets.get(b)
            if acc is None:
                buckets[b] = _Acc(1, v, v, v, t, v, inc)
            else:
                acc.add(1, v, v, v, t, v, inc)
        return [a.sample(b, counter) for b, a in sorted(buckets.items())]

    def _windows(
        self,
        c: sqlite3.Connection,
        table: str,
        columns: str,
        s: Series,
        window: int,
        start: int,
        end: int,
    ) -> list[Any]:
        """A series' rows of one tier for windows starting in [start, end): one index
        seek per window (rollups are clustered by tier, window, then series)."""
        (lo,) = c.execute(
            f"SELECT min(start_ns) FROM {table} WHERE window_ns = ?", (window,)
        ).fetchone()
        (hi,) = c.execute(
            f"SELECT max(start_ns) FROM {table} WHERE window_ns = ?", (window,)
        ).fetchone()
        if lo is None:
            return []
        first = max(lo, -(-start // window) * window)
        last = min(hi, (end - 1) // window * window)
        if first > last:
            return []
        return c.execute(
            "WITH RECURSIVE k(s) AS (SELECT ?1 UNION ALL SELECT s + ?2 FROM k WHERE s < ?3) "
            f"SELECT {columns} FROM k CROSS JOIN {table} AS r "
            "WHERE r.window_ns = ?2 AND r.start_ns = k.s AND r.series_id = ?4 "
            "ORDER BY r.start_ns",
            (first, window, last, s.id),
        ).fetchall()

    def _rollup_samples(
        self, c: sqlite3.Connection, s: Series, window: int, start: int, end: int, step: int
    ) -> list[Sample]:
        rows = self._windows(
            c,
            "rollups",
            "r.start_ns, r.count, r.sum, r.min, r.max, r.last_ts, r.last, r.increase",
            s,
            window,
            start,
            end,
        )
        counter = s.kind is MetricKind.COUNTER
        if not step or step == window:
            return [_Acc(*r[1:]).sample(r[0], counter) for r in rows]
        buckets: dict[int, _Acc] = {}
        for r in rows:
            b = r[0] - r[0] % step
            acc = buckets.get(b)
            if acc is None:
                buckets[b] = _Acc(*r[1:])
            else:
                acc.add(*r[1:])
        return [a.sample(b, counter) for b, a in sorted(buckets.items())]

    def latest(self, name: str | None = None, tags: TagFilter = None) -> list[Latest]:
        """The newest finite value of every matching series (kept with the series, so it
        is there even once its points have aged out)."""
        with self._read() as c:
            out = []
            for s in self._series(c, name, tags):
                row = c.execute(
                    "SELECT base_ts, base_value FROM series WHERE id = ? AND base_ts IS NOT NULL",
                    (s.id,),
                ).fetchone()
                if row is not None:
                    out.append(Latest(s, row[0], row[1]))
            return out

    # -- histograms -------------------------------------------------------------------

    def _hist_rows(
        self, c: sqlite3.Connection, s: Series, src: Source, start: int, end: int
    ) -> list[tuple[int, int, float, float, float, bytes]]:
        columns = "r.start_ns, r.count, r.sum, r.min, r.max, r.hdr"
        if src.window_ns:
            return self._windows(c, "hist_rollups", columns, s, src.window_ns, start, end)
        return c.execute(
            f"SELECT {columns} FROM histograms AS r "
            "WHERE r.series_id = ? AND r.start_ns >= ? AND r.start_ns < ? ORDER BY r.start_ns",
            (s.id, start, end),
        ).fetchall()

    def percentiles(
        self,
        name: str | None = None,
        tags: TagFilter = None,
        *,
        start_ns: int,
        end_ns: int | None = None,
        qs: Sequence[float] = DEFAULT_QS,
        merge: bool = True,
        source: str | None = None,
    ) -> list[Percentiles]:
        """Percentiles `qs` (0..100) of the histogram snapshots of the matching series
        in `[start_ns, end_ns)`, merged exactly (HdrHistogram, same precision as the
        aggregator's): one result over all of them with `merge`, else one per series.
        Read from raw snapshots when raw retention covers `start_ns`, else from the
        finest rollup tier that does (whole windows starting in the range)."""
        end = end_ns if end_ns is not None else 2**63 - 1
        with self._read() as c:
            src = self._choose(self._sources(c), start_ns, None, source)
            agg = _core.Aggregator(
                ONE_WINDOW,
                percentiles=list(qs),
                significant_digits=self._digits(c),
                max_series_per_metric=ONE_WINDOW,
            )
            matched = self._series(c, name, tags)
            by_key: dict[str, list[Series]] = {}
            for s in matched:
                key = "all" if merge else str(s.id)
                found = False
                for row in self._hist_rows(c, s, src, start_ns, end):
                    found = True
                    agg.merge_snapshot(key, s.unit, (), 0, *row[1:5], _b64(row[5]))
                if found:
                    by_key.setdefault(key, []).append(s)
        out = []
        for r in agg.flush(0, force=True):
            out.append(
                Percentiles(
                    series=tuple(by_key[r["name"]]),
                    source=src.label,
                    count=r["count"],
                    sum=r["sum"],
                    min=r["min"],
                    max=r["max"],
                    percentiles=dict(r["percentiles"]),
                    hdr=r["hdr"],
                )
            )
        return out

    def percentiles_over_time(
        self,
        name: str | None = None,
        tags: TagFilter = None,
        *,
        start_ns: int,
        step_ns: int,
        end_ns: int | None = None,
        qs: Sequence[float] = DEFAULT_QS,
        source: str | None = None,
    ) -> list[PercentileWindow]:
        """Percentiles per epoch-aligned step (rounded up to whole windows of the chosen
        tier) over every matching series merged: a latency chart's line."""
        end = end_ns if end_ns is not None else 2**63 - 1
        with self._read() as c:
            src = self._choose(self._sources(c), start_ns, step_ns, source)
            w = max(src.window_ns, 1)
            step = -(-step_ns // w) * w
            agg = _core.Aggregator(
                step,
                percentiles=list(qs),
                significant_digits=self._digits(c),
                max_series_per_metric=ONE_WINDOW,
            )
            for s in self._series(c, name, tags):
                for r in self._hist_rows(c, s, src, start_ns, end):
                    agg.merge_snapshot("all", s.unit, (), r[0], *r[1:5], _b64(r[5]))
        return [
            PercentileWindow(r["start_ns"], r["count"], dict(r["percentiles"]))
            for r in agg.flush(0, force=True)
        ]

    # -- events -----------------------------------------------------------------------

    def events(
        self,
        types: str | Iterable[str] | None = None,
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int | None = 1000,
        newest_first: bool = True,
    ) -> list[StoredEvent]:
        """Stored events ('alert', 'span', 'health', …; None = all) in `[start_ns,
        end_ns)`, newest first unless `newest_first=False`, at most `limit`."""
        where = ["ts_ns >= ?", "ts_ns < ?"]
        args: list[Any] = [
            start_ns if start_ns is not None else -(2**63),
            end_ns if end_ns is not None else 2**63 - 1,
        ]
        if types is not None:
            wanted = [types] if isinstance(types, str) else list(types)
            where.append(f"type IN ({', '.join('?' * len(wanted))})")
            args += wanted
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT id, type, ts_ns, data FROM events WHERE {' AND '.join(where)} "
            f"ORDER BY ts_ns {order}, id {order}"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._read() as c:
            rows = c.execute(sql, args).fetchall()
        return [StoredEvent(i, t, ts, json.loads(d)) for i, t, ts, d in rows]

    def event_types(self) -> list[str]:
        with self._read() as c:
            return [r[0] for r in c.execute("SELECT DISTINCT type FROM events ORDER BY type")]


class _Acc:
    """Merges points or rollup windows into one window (the writer's rules)."""

    __slots__ = ("count", "increase", "last", "last_ts", "max", "min", "sum")

    def __init__(
        self,
        count: int,
        sum: float,
        min: float,
        max: float,
        last_ts: int,
        last: float,
        increase: float | None,
    ) -> None:
        self.count = count
        self.sum = sum
        self.min = min
        self.max = max
        self.last_ts = last_ts
        self.last = last
        self.increase = increase

    def add(
        self,
        count: int,
        sum: float,
        min: float,
        max: float,
        last_ts: int,
        last: float,
        increase: float | None,
    ) -> None:
        self.count += count
        self.sum += sum
        self.min = min if min < self.min else self.min
        self.max = max if max > self.max else self.max
        if last_ts >= self.last_ts:
            self.last_ts = last_ts
            self.last = last
        if increase is not None:
            self.increase = increase if self.increase is None else self.increase + increase

    def sample(self, ts: int, counter: bool) -> Sample:
        value = self.last if counter else self.sum / self.count
        return Sample(ts, value, self.count, self.sum, self.min, self.max, self.last, self.increase)


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def pipeline_database(config: str | Path, sink: str | None = None) -> Path:
    """The database file of the `sqlite` sink of a pipeline file. Raises HistoryError if
    there is no such sink, or several and `sink` does not pick one; ConfigInvalid if the
    file is not a valid pipeline."""
    from revopipe.config.load import load_file
    from revopipe_plugins.sqlite.config import SqliteConfig

    spec = load_file(config)
    found = {
        name: c.config
        for name, c in spec.components.items()
        if c.kind == "sink" and isinstance(c.config, SqliteConfig)
    }
    if not found:
        raise HistoryError(
            f'{config} has no sqlite sink; add one, e.g. [sinks.history] type = "sqlite" '
            'inputs = ["..."]'
        )
    if sink is None:
        if len(found) > 1:
            raise HistoryError(
                f"{config} has several sqlite sinks ({', '.join(sorted(found))}); pick one "
                "with --sink NAME"
            )
        (cfg,) = found.values()
    elif sink in found:
        cfg = found[sink]
    else:
        raise HistoryError(
            f"{config} has no sqlite sink named {sink!r}; its sqlite sinks: "
            + ", ".join(sorted(found))
        )
    return spec.settings.data_dir / cfg.path
