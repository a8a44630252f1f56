"""Evaluate a condition tree against the latest aggregated values.

A vector is `dict[Tags, float]`: one value per label set. Missing data and division by zero
drop the series concerned; they are never errors, so a rule over absent series is simply
not firing.

Cost model (the target is 10 000 series x 50 rules every window on one core; measured by
`benches/bench_alert_eval.py`): the set of series a selector picks changes only when
series appear or expire, not when their values change, so each metric name keeps, per
selector ever evaluated against it, the series it matches, maintained incrementally as
series come and go. A pass then costs one lookup per selected series instead of every
matcher over every series of the name. Label sets are interned to small ints, so the
vectors rules combine are keyed by ints (cheap to hash) and only a rule's result is turned
back into tags. Within one pass (until the next `update`/`expire`) every selector's vector
and every aggregation, error ratio, trend and arithmetic result is memoized, so rules
sharing sub-expressions compute them once; and the group key of a label set under a
`by`/`without` list is remembered across passes.
"""

from __future__ import annotations

import math
import operator
import re
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache

from revopipe.batch import Batch, MetricBatch
from revopipe.events import Tags
from revopipe_plugins.alerts.rules.parse import (
    Aggregate,
    Arith,
    Compare,
    ErrorRatio,
    Expr,
    Matcher,
    Number,
    PredictLinear,
    SetOp,
    Stat,
)

SeriesKey = tuple[str, Tags]
Vector = dict[Tags, float]
Matchers = tuple[Matcher, ...]
# Internally a vector is keyed by the snapshot's small-int id of each label set: hashing
# an int is free, hashing a tags tuple of five pairs costs about a microsecond, and a pass
# over 10 000 series x 50 rules does that millions of times. Equal label sets share one
# id (whatever the metric name), so matching on identical label sets is matching on ids.
IVector = dict[int, float]
_Test = Callable[[Tags], bool]
_NS = 1_000_000_000

# A predict_linear keeps at most about this many samples per series it tracks, spread over
# its window (closer samples are thinned), so memory per tracked series is bounded
# (~4 KiB) whatever the window or the rate at which values arrive.
RING_SAMPLES = 256
# Selections per metric name kept across passes; past this (rules generated on the fly?)
# they are dropped and rebuilt on demand, so memory stays bounded.
_MAX_SELECTIONS = 1024
# Group keys remembered per `by`/`without` list, relative to the series count.
_GROUP_KEYS_SLACK = 4


class _Ring:
    """Recent (timestamp, value) samples of one series for a least-squares trend."""

    __slots__ = ("spacing", "stamps", "values", "window")

    def __init__(self, window_ns: int) -> None:
        self.stamps: array[int] = array("q")
        self.values: array[float] = array("d")
        self.window = 0
        self.spacing = 0
        self.widen(window_ns)

    def widen(self, window_ns: int) -> None:
        if window_ns > self.window:
            self.window = window_ns
            self.spacing = window_ns // RING_SAMPLES

    def add(self, ts: int, value: float) -> None:
        stamps, values = self.stamps, self.values
        n = len(stamps)
        if n:
            last = stamps[-1]
            if ts <= last:
                if ts == last:  # the same window reported again: the later row wins
                    values[-1] = value
                return
            if n >= 2 and last - stamps[-2] < self.spacing:
                # Thinning: the newest sample slides forward until it is `spacing` past
                # the one before, then stays; so all but the newest are at least
                # `spacing` apart, at most RING_SAMPLES + 2 in the window.
                stamps[-1] = ts
                values[-1] = value
                return
        stamps.append(ts)
        values.append(value)
        cutoff = ts - self.window
        if stamps[0] < cutoff:
            k = 0
            while stamps[k] < cutoff:
                k += 1
            del stamps[:k], values[:k]

    def predict(self, window_ns: int, horizon_s: float) -> float | None:
        """Least-squares line over the samples in the last `window_ns`, read `horizon_s`
        after the newest sample; None with fewer than two distinct timestamps."""
        stamps, values = self.stamps, self.values
        n = len(stamps)
        if n < 2:
            return None
        newest = stamps[-1]
        start = 0
        cutoff = newest - window_ns
        while stamps[start] < cutoff:
            start += 1
        k = n - start
        if k < 2:
            return None
        xs = [(stamps[i] - newest) / _NS for i in range(start, n)]
        ys = values[start:]
        mx = math.fsum(xs) / k
        my = math.fsum(ys) / k
        sxx = math.fsum((x - mx) * (x - mx) for x in xs)
        if sxx == 0:
            return None
        sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        slope = sxy / sxx
        # the fitted value at the newest sample (x = 0), then `horizon` along the line
        result = my - slope * mx + slope * horizon_s
        return result if math.isfinite(result) else None


_NO_TRACKERS: dict[Matchers, tuple[_Test, int]] = {}


class _Family:
    """All series of one metric name (by label-set id), with the selections made on them."""

    __slots__ = ("rings", "selections", "stamps", "trackers", "values")

    def __init__(self, trackers: dict[Matchers, tuple[_Test, int]]) -> None:
        self.values: IVector = {}
        self.stamps: dict[int, int] = {}
        # matchers -> (the ids they accept, in arrival order; the predicate)
        self.selections: dict[Matchers, tuple[dict[int, None], _Test]] = {}
        # the Snapshot's predict_linear selectors of this name -> (predicate, window)
        self.trackers = trackers
        self.rings: dict[int, _Ring] = {}

    def added(self, i: int, tags: Tags) -> None:
        for keys, test in self.selections.values():
            if test(tags):
                keys[i] = None
        if self.trackers:
            window = 0
            for test, w in self.trackers.values():
                if w > window and test(tags):
                    window = w
            if window:
                self.rings[i] = _Ring(window)

    def removed(self, i: int) -> None:
        del self.values[i], self.stamps[i]
        for keys, _ in self.selections.values():
            keys.pop(i, None)
        if self.rings:
            self.rings.pop(i, None)

    def selection(self, matchers: Matchers, tags_of: list[Tags]) -> dict[int, None]:
        hit = self.selections.get(matchers)
        if hit is not None:
            return hit[0]
        if len(self.selections) >= _MAX_SELECTIONS:
            self.selections.clear()
        test = _tags_test(matchers)
        # The first scan runs each regex once per distinct label value; the predicate kept
        # for series that appear later runs it per new series (no memo to grow unbounded).
        scan = _tags_test(matchers, memo=True)
        keys = dict.fromkeys(i for i in self.values if scan(tags_of[i]))
        self.selections[matchers] = (keys, test)
        return keys


class Snapshot(Mapping[SeriesKey, float]):
    """Latest value per (metric name with stat, sorted tags), indexed by name, with the
    timestamp of that value so series that stopped reporting can be expired.

    Safe to update from one thread while another evaluates: `update`, `expire` and each
    `evaluate` hold the snapshot's lock, so a rule sees a consistent snapshot (two rules of
    one pass may see different ones if an update lands between them).

    Memory: per series its value and stamp; per distinct label set one id; per selector
    the ids it matches; and, for series that a `predict_linear` selects (only those), at
    most `RING_SAMPLES` + 2 samples over its window."""

    __slots__ = (
        "_count",
        "_derived",
        "_families",
        "_free",
        "_group_keys",
        "_ids",
        "_lock",
        "_memo",
        "_refs",
        "_tags_of",
        "_tracked",
    )

    def __init__(self, values: Mapping[SeriesKey, float] | None = None, timestamp: int = 0) -> None:
        self._families: dict[str, _Family] = {}
        self._count = 0
        # label set <-> id; refs counts the series (of any name) holding the label set
        self._ids: dict[Tags, int] = {}
        self._tags_of: list[Tags] = []
        self._refs: list[int] = []
        self._free: list[int] = []
        # ids made for group keys that no series holds: released when series expire
        self._derived: set[int] = set()
        # name -> predict_linear matchers -> (predicate, window ns)
        self._tracked: dict[str, dict[Matchers, tuple[_Test, int]]] = {}
        # results valid until the next update/expire: selector vectors and node results
        self._memo: dict[object, IVector] = {}
        # (drop?, labels) -> series id -> group key id
        self._group_keys: dict[tuple[bool, frozenset[str]], dict[int, int]] = {}
        self._lock = threading.RLock()
        if values:
            items = list(values.items())
            self._ingest(
                [k[0] for k, _ in items],
                [k[1] for k, _ in items],
                [v for _, v in items],
                [timestamp] * len(items),
            )

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # -- label set ids ------------------------------------------------------------------

    def _intern(self, tags: Tags) -> int:
        i = self._ids.get(tags)
        if i is None:
            if self._free:
                i = self._free.pop()
                self._tags_of[i] = tags
                self._refs[i] = 0
            else:
                i = len(self._tags_of)
                self._tags_of.append(tags)
                self._refs.append(0)
            self._ids[tags] = i
        return i

    def _release(self, i: int) -> None:
        del self._ids[self._tags_of[i]]
        self._tags_of[i] = ()
        self._free.append(i)

    def group_id(self, tags: Tags) -> int:
        """The id of a group key (a label set that may belong to no series)."""
        i = self._intern(tags)
        if not self._refs[i]:
            self._derived.add(i)
        return i

    def tags_of(self, i: int) -> Tags:
        return self._tags_of[i]

    # -- writing ------------------------------------------------------------------------

    def _family(self, name: str) -> _Family:
        fam = self._families.get(name)
        if fam is None:
            fam = self._families[name] = _Family(self._tracked.get(name, _NO_TRACKERS))
        return fam

    def _ingest(
        self,
        names: Iterable[str],
        tags_col: Iterable[Tags],
        values_col: Iterable[float],
        stamps_col: Iterable[int],
    ) -> None:
        with self._lock:
            if self._memo:
                self._memo.clear()
            families = self._families
            ids = self._ids
            for name, tags, value, ts in zip(names, tags_col, values_col, stamps_col, strict=True):
                fam = families.get(name)
                if fam is None:
                    fam = self._family(name)
                values = fam.values
                i = ids.get(tags)
                if i is None or i not in values:
                    i = self._intern(tags)
                    refs = self._refs[i]
                    if not refs:
                        self._derived.discard(i)
                    self._refs[i] = refs + 1
                    self._count += 1
                    values[i] = value
                    fam.added(i, tags)
                else:
                    values[i] = value
                fam.stamps[i] = ts
                if fam.rings:
                    ring = fam.rings.get(i)
                    if ring is not None:
                        ring.add(ts, value)

    def expire(self, before_ns: int) -> int:
        """Forget series whose latest value is older than `before_ns`, so a series that
        stopped reporting reads as missing data; returns how many were dropped."""
        dropped = 0
        with self._lock:
            refs = self._refs
            for name, fam in list(self._families.items()):
                old = [i for i, ts in fam.stamps.items() if ts < before_ns]
                for i in old:
                    fam.removed(i)
                    refs[i] -= 1
                    if not refs[i]:
                        self._release(i)
                dropped += len(old)
                if not fam.values:
                    del self._families[name]
            if dropped:
                self._count -= dropped
                # Nothing may map a released id any more: it will be reused.
                self._memo.clear()
                self._group_keys.clear()
                for i in self._derived:
                    if not refs[i]:
                        self._release(i)
                self._derived.clear()
        return dropped

    @classmethod
    def from_batches(cls, batches: Iterable[Batch | MetricBatch]) -> Snapshot:
        snap = cls()
        for b in batches:
            snap.update(b)
        return snap

    def update(self, batch: Batch | MetricBatch) -> None:
        """Take a batch's metric rows; a later row for the same series replaces the earlier
        (rows arrive in window order, so later is newer)."""
        mb = batch.metrics if isinstance(batch, Batch) else batch
        self._ingest(mb.names, mb.tags, mb.values, mb.timestamps)

    # -- reading ------------------------------------------------------------------------

    def select_ids(self, name: str, matchers: Matchers = ()) -> IVector:
        """The series named `name` that every matcher accepts, by label-set id; memoized
        until the snapshot next changes (hence read-only)."""
        key = (name, matchers)
        memo = self._memo
        hit = memo.get(key)
        if hit is not None:
            return hit
        fam = self._families.get(name)
        out: IVector
        if fam is None:
            out = {}
        elif not matchers:
            out = dict(fam.values)
        else:
            values = fam.values
            out = {i: values[i] for i in fam.selection(matchers, self._tags_of)}
        memo[key] = out
        return out

    def select(self, name: str, matchers: Matchers = ()) -> Vector:
        """The series named `name` that every matcher accepts."""
        with self._lock:
            tags_of = self._tags_of
            return {tags_of[i]: v for i, v in self.select_ids(name, matchers).items()}

    def has(self, name: str) -> bool:
        return name in self._families

    def predict(self, name: str, matchers: Matchers, window_s: float, horizon_s: float) -> IVector:
        """Per selected series (by id), its least-squares trend over `window_s` read
        `horizon_s` ahead. The first call for a selector starts keeping samples for the
        series it selects, now and later (seeded with their current value); a series with
        fewer than two samples in the window gives no result."""
        window = max(1, round(window_s * _NS))
        tracked = self._tracked.setdefault(name, {})
        known = tracked.get(matchers)
        fam = self._families.get(name)
        if known is None or known[1] < window:
            tracked[matchers] = (_tags_test(matchers), window)
            if fam is not None:
                fam.trackers = tracked
                for i in self._matching(fam, matchers):
                    ring = fam.rings.get(i)
                    if ring is None:
                        ring = fam.rings[i] = _Ring(window)
                        ring.add(fam.stamps[i], fam.values[i])
                    else:
                        ring.widen(window)
        out: IVector = {}
        if fam is None:
            return out
        rings = fam.rings
        for i in self._matching(fam, matchers):
            ring = rings.get(i)
            if ring is not None:
                v = ring.predict(window, horizon_s)
                if v is not None:
                    out[i] = v
        return out

    def _matching(self, fam: _Family, matchers: Matchers) -> Iterable[int]:
        return fam.selection(matchers, self._tags_of) if matchers else fam.values

    def group_keys(self, drop: bool, labels: frozenset[str]) -> dict[int, int]:
        """series id -> its group key's id (without `labels` if drop, else with only them);
        kept across passes, cleared when series expire or it outgrows the series count."""
        spec = (drop, labels)
        keys = self._group_keys.get(spec)
        if keys is None or len(keys) > _GROUP_KEYS_SLACK * (len(self._ids) + 64):
            keys = self._group_keys[spec] = {}
        return keys

    def series(self, name: str) -> Mapping[Tags, float]:
        return self.select(name)

    def memo(self) -> dict[object, IVector]:
        return self._memo

    def __getitem__(self, key: SeriesKey) -> float:
        fam = self._families.get(key[0])
        i = self._ids.get(key[1])
        if fam is None or i is None or i not in fam.values:
            raise KeyError(key)
        return fam.values[i]

    def __iter__(self) -> Iterator[SeriesKey]:
        tags_of = self._tags_of
        for name, fam in list(self._families.items()):
            for i in list(fam.values):
                yield name, tags_of[i]

    def __len__(self) -> int:
        return self._count


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _label(tags: Tags, name: str) -> str:
    for k, v in tags:
        if k == name:
            return v
    return ""


_MEMO_LIMIT = 100_000


def _matcher_test(m: Matcher, memo: bool) -> Callable[[Tags], bool]:
    """A predicate over a series' tags; an absent label reads as ""."""
    label, value = m.label, m.value
    if m.op in ("=", "!=") and value:
        # A tuple membership test runs in C: far cheaper than building a dict per series.
        pair = (label, value)
        if m.op == "=":
            return lambda tags: pair in tags
        return lambda tags: pair not in tags
    if m.op == "=":
        return lambda tags: _label(tags, label) == ""
    if m.op == "!=":
        return lambda tags: _label(tags, label) != ""
    rx = _regex(value)
    want = m.op == "=~"
    if not memo:
        return lambda tags: (rx.fullmatch(_label(tags, label)) is not None) == want
    # Label values repeat across series (a handful of dcs, routes, ...): match each once.
    seen: dict[str, bool] = {}

    def test(tags: Tags) -> bool:
        v = _label(tags, label)
        hit = seen.get(v)
        if hit is None:
            if len(seen) >= _MEMO_LIMIT:
                seen.clear()
            hit = seen[v] = (rx.fullmatch(v) is not None) == want
        return hit

    return test


def _tags_test(matchers: Matchers, memo: bool = False) -> Callable[[Tags], bool]:
    # Cheap exact-pair tests first: they reject most series before any regex runs.
    ordered = sorted(matchers, key=lambda m: 0 if m.op in ("=", "!=") and m.value else 1)
    tests = [_matcher_test(m, memo) for m in ordered]
    if not tests:
        return lambda tags: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        a, b = tests
        return lambda tags: a(tags) and b(tags)
    return lambda tags: all(f(tags) for f in tests)


def _grouped(
    snapshot: Snapshot, vec: IVector, drop: bool, labels: frozenset[str]
) -> dict[int, list[float]]:
    """`vec`'s values per group key (label sets without `labels`, or with only them)."""
    keys = snapshot.group_keys(drop, labels)
    groups: dict[int, list[float]] = {}
    for i, v in vec.items():
        g = keys.get(i)
        if g is None:
            tags = snapshot.tags_of(i)
            if drop:
                key = tuple(kv for kv in tags if kv[0] not in labels) if labels else tags
            else:
                key = tuple(kv for kv in tags if kv[0] in labels)
            g = keys[i] = snapshot.group_id(key)
        group = groups.get(g)
        if group is None:
            groups[g] = [v]
        else:
            group.append(v)
    return groups


def _error_ratio(snapshot: Snapshot, expr: ErrorRatio) -> IVector:
    drop = frozenset(m.label for m in expr.numerator.matchers)

    def summed(metric: str, matchers: Matchers) -> IVector:
        # A histogram counts its observations in `.count`; a counter its increase in `.sum`.
        stat = "count" if snapshot.has(f"{metric}.count") else "sum"
        vec = snapshot.select_ids(f"{metric}.{stat}", matchers)
        return {g: math.fsum(vs) for g, vs in _grouped(snapshot, vec, True, drop).items()}

    num = summed(expr.numerator.metric, expr.numerator.matchers)
    den = summed(expr.denominator.metric, expr.denominator.matchers)
    # No numerator series for a group means no errors were seen, not missing data.
    return {k: num.get(k, 0.0) / d for k, d in den.items() if d != 0}


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}
_CMP: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def _arith(op: str, left: IVector | float, right: IVector | float) -> IVector | float:
    """One-to-one matching on identical label sets, a number applying to every series;
    division by zero or a non-finite result drops the series (`r - r` is 0 only for a
    finite r)."""
    f = _ARITH[op]
    div = op == "/"
    if isinstance(left, dict):
        out: IVector = {}
        if isinstance(right, dict):
            rget = right.get
            for k, a in left.items():
                b = rget(k)
                if b is not None and not (div and b == 0):
                    r = f(a, b)
                    if r - r == 0:
                        out[k] = r
            return out
        if div and right == 0:
            return out
        for k, a in left.items():
            r = f(a, right)
            if r - r == 0:
                out[k] = r
        return out
    if isinstance(right, dict):
        out = {}
        for k, b in right.items():
            if not (div and b == 0):
                r = f(left, b)
                if r - r == 0:
                    out[k] = r
        return out
    if div and right == 0:
        return math.nan
    r = f(left, right)
    return r if r - r == 0 else math.nan


def _aggregate(snapshot: Snapshot, expr: Aggregate, vec: IVector) -> IVector:
    groups = _grouped(snapshot, vec, expr.mode == "without", frozenset(expr.labels))
    if expr.op == "sum":
        return {k: math.fsum(vs) for k, vs in groups.items()}
    if expr.op == "max":
        return {k: max(vs) for k, vs in groups.items()}
    if expr.op == "min":
        return {k: min(vs) for k, vs in groups.items()}
    return {k: math.fsum(vs) / len(vs) for k, vs in groups.items()}


def _eval(expr: Expr, snapshot: Snapshot) -> IVector | float:
    if isinstance(expr, Stat):
        return snapshot.select_ids(expr.series_name, expr.selector.matchers)
    if isinstance(expr, Number):
        return expr.value
    if isinstance(expr, Compare):
        return _compare(expr, _eval(expr.left, snapshot), _eval(expr.right, snapshot))
    if isinstance(expr, SetOp):
        left = _eval(expr.left, snapshot)
        right = _eval(expr.right, snapshot)
        lv = left if isinstance(left, dict) else {}
        rv = right if isinstance(right, dict) else {}
        if expr.op == "and":
            return {k: v for k, v in lv.items() if k in rv}
        if expr.op == "unless":
            return {k: v for k, v in lv.items() if k not in rv}
        return {**rv, **lv}
    # Aggregations, error ratios, trends and arithmetic are what rules share (two
    # thresholds on one error ratio, ...): computed once per pass. Results are never
    # mutated in place, so sharing them is safe.
    memo = snapshot.memo()
    hit = memo.get(expr)
    if hit is not None:
        return hit
    result = _eval_shared(expr, snapshot)
    if isinstance(result, dict):
        memo[expr] = result
    return result


def _eval_shared(expr: Expr, snapshot: Snapshot) -> IVector | float:
    if isinstance(expr, ErrorRatio):
        return _error_ratio(snapshot, expr)
    if isinstance(expr, PredictLinear):
        st = expr.stat
        return snapshot.predict(st.series_name, st.selector.matchers, expr.window, expr.horizon)
    if isinstance(expr, Aggregate):
        inner = _eval(expr.expr, snapshot)
        return _aggregate(snapshot, expr, inner) if isinstance(inner, dict) else inner
    assert isinstance(expr, Arith), expr
    return _arith(expr.op, _eval(expr.left, snapshot), _eval(expr.right, snapshot))


def _compare(expr: Compare, left: IVector | float, right: IVector | float) -> IVector | float:
    """A filter that keeps the series' value (the left one when both sides are series)."""
    cmp = _CMP[expr.op]
    if isinstance(left, dict):
        if isinstance(right, dict):
            return {k: a for k, a in left.items() if k in right and cmp(a, right[k])}
        return {k: a for k, a in left.items() if cmp(a, right)}
    if isinstance(right, dict):
        return {k: b for k, b in right.items() if cmp(left, b)}
    return 1.0 if cmp(left, right) else math.nan


def evaluate(expr: Expr, snapshot: Snapshot) -> dict[Tags, float]:
    """The label sets for which the condition holds, each with its (left-hand) value."""
    with snapshot.lock:
        result = _eval(expr, snapshot)
        if not isinstance(result, dict):
            return {}
        # A new dict: the result may be a memoized vector shared with other rules.
        tags_of = snapshot.tags_of
        return {tags_of(i): v for i, v in result.items()}
