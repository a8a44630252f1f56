"""Evaluate a condition tree against the latest aggregated values.

A vector is `dict[Tags, float]`: one value per label set. Missing data and division by zero
drop the series concerned; they are never errors, so a rule over absent series is simply
not firing.
"""

from __future__ import annotations

import math
import operator
import re
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
    Selector,
    SetOp,
    Stat,
)

SeriesKey = tuple[str, Tags]
Vector = dict[Tags, float]


class Snapshot(Mapping[SeriesKey, float]):
    """Latest value per (metric name with stat, sorted tags), indexed by name, with the
    timestamp of that value so series that stopped reporting can be expired."""

    __slots__ = ("_by_name", "_selected", "_stamps", "_values")

    def __init__(self, values: Mapping[SeriesKey, float] | None = None, timestamp: int = 0) -> None:
        self._values: dict[SeriesKey, float] = {}
        self._stamps: dict[SeriesKey, int] = {}
        self._by_name: dict[str, dict[Tags, float]] = {}
        self._selected: dict[tuple[str, tuple[Matcher, ...]], Vector] = {}
        for (name, tags), v in (values or {}).items():
            self._set(name, tags, v, timestamp)

    def _set(self, name: str, tags: Tags, value: float, timestamp: int) -> None:
        if self._selected:
            self._selected.clear()
        self._values[(name, tags)] = value
        self._stamps[(name, tags)] = timestamp
        self._by_name.setdefault(name, {})[tags] = value

    def expire(self, before_ns: int) -> int:
        """Forget series whose latest value is older than `before_ns`, so a series that
        stopped reporting reads as missing data; returns how many were dropped."""
        old = [k for k, ts in self._stamps.items() if ts < before_ns]
        if old:
            self._selected.clear()
        for key in old:
            name, tags = key
            del self._values[key], self._stamps[key]
            series = self._by_name[name]
            del series[tags]
            if not series:
                del self._by_name[name]
        return len(old)

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
        for name, tags, value, ts in zip(mb.names, mb.tags, mb.values, mb.timestamps, strict=True):
            self._set(name, tags, value, ts)

    def select(self, name: str, matchers: tuple[Matcher, ...] = ()) -> Vector:
        """The series named `name` that every matcher accepts. Rules often share selectors,
        so the result is cached until the snapshot next changes (hence read-only)."""
        key = (name, matchers)
        hit = self._selected.get(key)
        if hit is not None:
            return hit
        series = self.series(name)
        out: Vector
        if not matchers:
            out = dict(series)
        else:
            tests = [_tags_test(m) for m in matchers]
            if len(tests) == 1:
                test = tests[0]
                out = {t: v for t, v in series.items() if test(t)}
            else:
                out = {t: v for t, v in series.items() if all(f(t) for f in tests)}
        self._selected[key] = out
        return out

    def series(self, name: str) -> Mapping[Tags, float]:
        return self._by_name.get(name, {})

    def __getitem__(self, key: SeriesKey) -> float:
        return self._values[key]

    def __iter__(self) -> Iterator[SeriesKey]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _label(tags: Tags, name: str) -> str:
    for k, v in tags:
        if k == name:
            return v
    return ""


def _tags_test(m: Matcher) -> Callable[[Tags], bool]:
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
    # Label values repeat across series (a handful of dcs, routes, ...): match each once.
    seen: dict[str, bool] = {}

    def test(tags: Tags) -> bool:
        v = _label(tags, label)
        hit = seen.get(v)
        if hit is None:
            hit = seen[v] = (rx.fullmatch(v) is not None) == want
        return hit

    return test


def _drop_labels(tags: Tags, drop: frozenset[str]) -> Tags:
    return tuple(kv for kv in tags if kv[0] not in drop) if drop else tags


def _error_ratio(snapshot: Snapshot, expr: ErrorRatio) -> Vector:
    def summed(sel: Selector, drop: frozenset[str]) -> Vector:
        # A histogram counts its observations in `.count`; a counter its increase in `.sum`.
        stat = "count" if snapshot.series(f"{sel.metric}.count") else "sum"
        out: Vector = {}
        for tags, v in snapshot.select(f"{sel.metric}.{stat}", sel.matchers).items():
            key = _drop_labels(tags, drop)
            out[key] = out.get(key, 0.0) + v
        return out

    drop = frozenset(m.label for m in expr.numerator.matchers)
    num = summed(expr.numerator, drop)
    den = summed(expr.denominator, drop)
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


def _arith(op: str, a: float, b: float) -> float | None:
    if op == "/" and b == 0:
        return None
    r = _ARITH[op](a, b)
    return r if math.isfinite(r) else None


def _aggregate(expr: Aggregate, vec: Vector) -> Vector:
    keep = frozenset(expr.labels)
    groups: dict[Tags, list[float]] = {}
    for tags, v in vec.items():
        if expr.mode == "by":
            key = tuple(kv for kv in tags if kv[0] in keep)
        else:
            key = _drop_labels(tags, keep)
        groups.setdefault(key, []).append(v)
    if expr.op == "sum":
        return {k: math.fsum(vs) for k, vs in groups.items()}
    if expr.op == "max":
        return {k: max(vs) for k, vs in groups.items()}
    if expr.op == "min":
        return {k: min(vs) for k, vs in groups.items()}
    return {k: math.fsum(vs) / len(vs) for k, vs in groups.items()}


def _eval(expr: Expr, snapshot: Snapshot) -> Vector | float:
    if isinstance(expr, Number):
        return expr.value
    if isinstance(expr, Stat):
        return snapshot.select(expr.series_name, expr.selector.matchers)
    if isinstance(expr, ErrorRatio):
        return _error_ratio(snapshot, expr)
    if isinstance(expr, Aggregate):
        inner = _eval(expr.expr, snapshot)
        return _aggregate(expr, inner) if isinstance(inner, dict) else inner
    left = _eval(expr.left, snapshot)
    right = _eval(expr.right, snapshot)
    if isinstance(expr, SetOp):
        lv = left if isinstance(left, dict) else {}
        rv = right if isinstance(right, dict) else {}
        if expr.op == "and":
            return {k: v for k, v in lv.items() if k in rv}
        if expr.op == "unless":
            return {k: v for k, v in lv.items() if k not in rv}
        return {**rv, **lv}
    if isinstance(expr, Arith):
        if not isinstance(left, dict) and not isinstance(right, dict):
            r = _arith(expr.op, left, right)
            return math.nan if r is None else r
        out: Vector = {}
        for k, a, b in _pairs(left, right):
            r = _arith(expr.op, a, b)
            if r is not None:
                out[k] = r
        return out
    return _compare(expr, left, right)


def _compare(expr: Compare, left: Vector | float, right: Vector | float) -> Vector | float:
    """A filter that keeps the series' value (the left one when both sides are series)."""
    cmp = _CMP[expr.op]
    if isinstance(left, dict):
        if isinstance(right, dict):
            return {k: a for k, a in left.items() if k in right and cmp(a, right[k])}
        return {k: a for k, a in left.items() if cmp(a, right)}
    if isinstance(right, dict):
        return {k: b for k, b in right.items() if cmp(left, b)}
    return 1.0 if cmp(left, right) else math.nan


def _pairs(left: Vector | float, right: Vector | float) -> Iterator[tuple[Tags, float, float]]:
    """One-to-one matching on identical label sets; a number pairs with every series."""
    if isinstance(left, dict) and isinstance(right, dict):
        for k, a in left.items():
            b = right.get(k)
            if b is not None:
                yield k, a, b
    elif isinstance(left, dict):
        for k, a in left.items():
            yield k, a, float(right)  # type: ignore[arg-type]
    elif isinstance(right, dict):
        for k, b in right.items():
            yield k, float(left), b


def evaluate(expr: Expr, snapshot: Snapshot) -> dict[Tags, float]:
    """The label sets for which the condition holds, each with its (left-hand) value."""
    result = _eval(expr, snapshot)
    # A copy: a bare selector's result is the snapshot's cached vector.
    return dict(result) if isinstance(result, dict) else {}
