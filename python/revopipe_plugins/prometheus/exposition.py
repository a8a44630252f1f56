"""The sink's state: the latest value of every series, grouped into Prometheus metric
families, with each series' and family's rendered text cached until it changes — a scrape
of mostly unchanged series joins cached strings instead of formatting every number."""

from __future__ import annotations

import functools
import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable

from revopipe import _core
from revopipe.batch import MetricBatch
from revopipe.events import Exemplar, HistogramSnapshot, MetricKind, Tags
from revopipe.wire.prometheus import (
    Format,
    escape_help,
    exemplar_text,
    format_le,
    format_value,
    label_text,
    labels,
    metric_name,
    unit_suffix,
)

SeriesKey = tuple[str, int, str, Tags]
"""(name, kind code, unit, tags): how rows and snapshots find their series."""

SELF_METRIC = "revopipe_prometheus_series"

_TYPES = {
    MetricKind.COUNTER: "counter",
    MetricKind.GAUGE: "gauge",
    MetricKind.HISTOGRAM: "histogram",
}
_COUNTER, _GAUGE, _HISTOGRAM, _SET = (int(k) for k in MetricKind)
_MAX_CACHED_KEYS = 10_000

SET_REASON = (
    "set metrics are not exported: a distinct count depends on who scrapes and how often; "
    "put an `aggregate` processor before this sink, it turns sets into `{name}.distinct` gauges"
)


@functools.cache
def _le_texts(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The `le` values of a set of bounds, +Inf last (few distinct sets exist: cached)."""
    return (*(format_le(b) for b in bounds), "+Inf")


class Series:
    """One Prometheus series (family + label set). `text`/`om_text` cache its lines."""

    __slots__ = ("family", "keys", "labels", "om_text", "text", "updated")

    def __init__(self, family: Family, label_pairs: Tags) -> None:
        self.family = family
        self.labels = label_pairs
        self.keys: list[SeriesKey] = []
        self.text: str | None = None
        self.om_text: str | None = None
        self.updated = 0.0

    def render(self, fmt: Format) -> str:
        raise NotImplementedError


class Scalar(Series):
    """A counter (cumulative total, exported as given) or a gauge (last value)."""

    __slots__ = ("prefix", "value")

    def __init__(self, family: Family, label_pairs: Tags) -> None:
        super().__init__(family, label_pairs)
        self.prefix = f"{family.sample_name}{label_text(label_pairs)} "
        self.value = 0.0

    def render(self, fmt: Format) -> str:
        text = self.text
        if text is None:
            text = self.text = f"{self.prefix}{format_value(self.value)}\n"
        return text


class Histogram(Series):
    """Cumulative buckets since the series appeared: per-bucket counts (the last one
    above every bound), sum, count and the latest exemplar of each bucket."""

    __slots__ = (
        "bounds",
        "bucket_prefixes",
        "count",
        "count_prefix",
        "counts",
        "exemplars",
        "sum",
        "sum_prefix",
    )

    def __init__(self, family: Family, label_pairs: Tags, bounds: tuple[float, ...]) -> None:
        super().__init__(family, label_pairs)
        name = family.name
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0
        self.exemplars: list[Exemplar | None] | None = None
        lt = label_text(label_pairs)
        # the labels escaped once, `le` appended last (label order does not matter)
        head = f"{name}_bucket{lt[:-1]}," if lt else f"{name}_bucket{{"
        self.bucket_prefixes = [f'{head}le="{le}"}} ' for le in _le_texts(bounds)]
        self.sum_prefix = f"{name}_sum{lt} "
        self.count_prefix = f"{name}_count{lt} "

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def merge_cumulative(self, cumulative: list[int], count: int, total: float) -> None:
        """Add a window given as cumulative counts at each bound (clamped so the buckets
        stay monotonic and never pass `count`, which Prometheus checks)."""
        prev = 0
        counts = self.counts
        for i, c in enumerate(cumulative):
            c = min(max(c, prev), count)
            counts[i] += c - prev
            prev = c
        counts[-1] += count - prev
        self.count += count
        self.sum += total

    def add_exemplar(self, e: Exemplar) -> None:
        if self.exemplars is None:
            self.exemplars = [None] * len(self.counts)
        i = bisect_left(self.bounds, e.value)
        held = self.exemplars[i]
        if held is None or e.timestamp_ns >= held.timestamp_ns:
            self.exemplars[i] = e

    def render(self, fmt: Format) -> str:
        # OpenMetrics differs only by exemplars and by a sum it forbids (negative or NaN:
        # _sum must behave as a counter there, and _count goes with it; the +Inf bucket
        # still holds the count); otherwise both formats share one text
        om = fmt is Format.OPENMETRICS and (self.exemplars is not None or not self.sum >= 0)
        text = self.om_text if om else self.text
        if text is not None:
            return text
        lines = []
        cum = 0
        exemplars = self.exemplars if om else None
        for i, prefix in enumerate(self.bucket_prefixes):
            cum += self.counts[i]
            line = f"{prefix}{cum}"
            if exemplars is not None and (e := exemplars[i]) is not None:
                line += exemplar_text(e.trace_id, e.span_id, e.value, e.timestamp_ns)
            lines.append(line)
        if not om or self.sum >= 0:
            lines.append(f"{self.sum_prefix}{format_value(self.sum)}")
            lines.append(f"{self.count_prefix}{self.count}")
        text = "\n".join(lines) + "\n"
        if om:
            self.om_text = text
        else:
            self.text = text
        return text


class Family:
    """A metric family: one TYPE, its series by label set, and its cached text."""

    __slots__ = (
        "claims",
        "kind",
        "name",
        "om_header",
        "om_text",
        "sample_name",
        "series",
        "text",
        "text_header",
    )

    def __init__(self, name: str, kind: MetricKind, help_text: str, unit: str) -> None:
        self.kind = kind
        self.name = name  # the 0.0.4 TYPE name; a counter's ends in _total
        self.sample_name = name
        type_ = _TYPES[kind]
        # OpenMetrics names a counter family without _total and its sample with it
        om_name = name[: -len("_total")] if kind is MetricKind.COUNTER else name
        if kind is MetricKind.COUNTER:
            self.claims = {om_name, name, f"{om_name}_created"}
        elif kind is MetricKind.HISTOGRAM:
            self.claims = {name, *(f"{name}_{s}" for s in ("bucket", "count", "sum", "created"))}
        else:
            self.claims = {name}
        self.text_header = (
            f"# HELP {name} {escape_help(help_text, Format.TEXT)}\n# TYPE {name} {type_}\n"
        )
        word = unit_suffix(unit)
        unit_line = f"# UNIT {om_name} {word}\n" if word and om_name.endswith("_" + word) else ""
        self.om_header = (
            f"# HELP {om_name} {escape_help(help_text, Format.OPENMETRICS)}\n"
            f"# TYPE {om_name} {type_}\n{unit_line}"
        )
        self.series: dict[Tags, Series] = {}
        self.text: str | None = None
        self.om_text: str | None = None

    def render(self, fmt: Format) -> str:
        if fmt is Format.OPENMETRICS:
            if self.om_text is None:
                body = "".join(s.render(fmt) for s in self.series.values())
                self.om_text = self.om_header + body
            return self.om_text
        if self.text is None:
            body = "".join(s.render(fmt) for s in self.series.values())
            self.text = self.text_header + body
        return self.text


class Exposition:
    """Every series the sink holds, rendered on demand. Not thread-safe: the sink writes
    and the HTTP handler renders on the same event loop."""

    def __init__(
        self,
        buckets_for: Callable[[str], tuple[float, ...]],
        expire_after: float,
        self_labels: Tags = (),
        on_reject: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buckets_for = buckets_for
        self.expire_after = expire_after
        self.clock = clock
        self.on_reject = on_reject or (lambda name, reason: None)
        self._families: dict[str, Family] = {}
        self._claims: dict[str, Family | None] = {SELF_METRIC: None}
        self._keys: dict[SeriesKey, Series] = {}
        self._rejected: dict[SeriesKey, str] = {}
        self._names: dict[tuple[str, str, int], str] = {}  # metric_name per (name, unit, kind)
        self._lru: OrderedDict[Series, None] = OrderedDict()
        self._version = 0
        self._bodies: dict[Format, tuple[int, bytes]] = {}
        self._self_prefix = f"{SELF_METRIC}{label_text(labels(self_labels))} "

    @property
    def series_count(self) -> int:
        return len(self._lru)

    # -- writing --------------------------------------------------------------------------

    def add_metrics(self, mb: MetricBatch) -> int:
        """Apply a batch of metric rows; returns how many were rejected (each reported
        through `on_reject` with the reason)."""
        now = self.clock()
        keys = self._keys
        lru = self._lru
        rejected = 0
        for name, kind, value, unit, tags in zip(
            mb.names, mb.kinds, mb.values, mb.units, mb.tags, strict=True
        ):
            if kind == _COUNTER and not value >= 0.0:
                # OpenMetrics forbids them, and rate() would read them as a reset
                self.on_reject(name, "a counter total is negative or NaN; send totals >= 0")
                rejected += 1
                continue
            if kind == _HISTOGRAM and value != value:
                self.on_reject(name, "a histogram observation is NaN")
                rejected += 1
                continue
            key = (name, kind, unit, tags)
            s = keys.get(key)
            if s is None:
                s = self._create(key)
                if s is None:
                    rejected += 1
                    continue
            if type(s) is Scalar:
                s.value = value
            elif type(s) is Histogram:
                s.observe(value)
            s.text = s.om_text = None
            fam = s.family
            fam.text = fam.om_text = None
            s.updated = now
            lru.move_to_end(s)
        if rejected < len(mb):
            self._version += 1
        return rejected

    def add_snapshot(self, snap: HistogramSnapshot) -> bool:
        """Add a histogram window. Raises ValueError (changing nothing) when its HDR
        histogram cannot be decoded; returns False if the series is rejected."""
        key = (snap.name, _HISTOGRAM, snap.unit, snap.tags)
        s = self._keys.get(key)
        bounds = s.bounds if isinstance(s, Histogram) else self.buckets_for(snap.unit)
        cumulative = (
            _core.hdr_bucket_counts(snap.hdr, snap.resolution, bounds) if snap.count > 0 else []
        )
        if s is None:
            s = self._create(key)
            if s is None:
                return False
        assert isinstance(s, Histogram)
        if snap.count > 0:
            s.merge_cumulative(cumulative, snap.count, snap.sum)
        for e in snap.exemplars:
            s.add_exemplar(e)
        s.text = s.om_text = None
        s.family.text = s.family.om_text = None
        s.updated = self.clock()
        self._lru.move_to_end(s)
        self._version += 1
        return True

    def _create(self, key: SeriesKey) -> Series | None:
        reason = self._rejected.get(key)
        if reason is None:
            series, reason = self._new_series(key)
            if series is not None:
                return series
            if len(self._rejected) >= _MAX_CACHED_KEYS:
                self._rejected.clear()
            self._rejected[key] = reason
        self.on_reject(key[0], reason)
        return None

    def _new_series(self, key: SeriesKey) -> tuple[Series | None, str]:
        name, code, unit, tags = key
        if code == _SET:
            return None, SET_REASON
        try:
            kind = MetricKind(code)
        except ValueError:
            return None, f"unknown metric kind code {code}"
        prom = self._names.get((name, unit, code))
        if prom is None:
            if len(self._names) >= _MAX_CACHED_KEYS:
                self._names.clear()
            prom = self._names[(name, unit, code)] = metric_name(name, unit, kind)
        family = self._families.get(prom)
        if family is None:
            family = Family(prom, kind, name if unit in ("", "1") else f"{name} ({unit})", unit)
            clash = next((n for n in family.claims if n in self._claims), None)
            if clash is not None:
                other = self._claims[clash]
                owner = f"the {other.kind.label} {other.name}" if other else "this sink's own"
                return None, (
                    f"its Prometheus name {prom} ({kind.label}) clashes with {owner} series "
                    f"on {clash}; rename one of them (a `tag` or `filter` processor) upstream"
                )
            self._families[prom] = family
            for n in family.claims:
                self._claims[n] = family
        elif family.kind is not kind:
            return None, (
                f"its Prometheus name {prom} is already a {family.kind.label}, this is a "
                f"{kind.label}; rename one of them upstream"
            )
        label_pairs = labels(tags, ("le",) if kind is MetricKind.HISTOGRAM else ())
        series = family.series.get(label_pairs)
        if series is None:
            if kind is MetricKind.HISTOGRAM:
                series = Histogram(family, label_pairs, self.buckets_for(unit))
            else:
                series = Scalar(family, label_pairs)
            family.series[label_pairs] = series
            family.text = family.om_text = None
            self._lru[series] = None
        series.keys.append(key)
        self._keys[key] = series
        return series, ""

    # -- expiry and rendering -------------------------------------------------------------

    def expire(self) -> int:
        """Drop series not updated for `expire_after` seconds; returns how many."""
        limit = self.clock() - self.expire_after
        lru = self._lru
        dropped = 0
        while lru:
            s = next(iter(lru))
            if s.updated > limit:
                break
            lru.popitem(last=False)
            dropped += 1
            for k in s.keys:
                self._keys.pop(k, None)
            fam = s.family
            del fam.series[s.labels]
            fam.text = fam.om_text = None
            if not fam.series:
                del self._families[fam.name]
                for n in fam.claims:
                    self._claims.pop(n, None)
                # a name that clashed with this family may be exported now
                self._rejected.clear()
        if dropped:
            self._version += 1
        return dropped

    def render(self, fmt: Format) -> bytes:
        """The whole exposition in `fmt`, UTF-8 encoded, after expiring stale series. The
        result is cached until a series changes (its own gauge, the series count, changes
        only with them)."""
        self.expire()
        cached = self._bodies.get(fmt)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        own = (
            f"# HELP {SELF_METRIC} Series this revopipe sink holds.\n"
            f"# TYPE {SELF_METRIC} gauge\n{self._self_prefix}{len(self._lru)}\n"
        )
        parts = [f.render(fmt) for f in self._families.values()]
        parts.append(own)
        if fmt is Format.OPENMETRICS:
            parts.append("# EOF\n")
        # a lone surrogate in a tag has no UTF-8 form: "?" rather than a failed scrape
        body = "".join(parts).encode("utf-8", "replace")
        self._bodies[fmt] = (self._version, body)
        return body
