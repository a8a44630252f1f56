"""k6-style pass/fail thresholds on a load test's summary: `p99 < 250ms`, `error_rate < 1%`.

Each threshold is one comparison `METRIC OP LIMIT`, parsed by hand into a small tree
(`Threshold(metric, op, Quantity)`), never evaluated as Python. A list of thresholds passes
when every one passes; the CLI exits non-zero otherwise.

Metrics (observed on the summary dict of `revopipe._core.LoadGenerator.summary()`):

- latency, with a unit (us, ms, s; a bare number is refused, as '250' could be either):
  p50, p90, p95, p99, p99.9 (also written p(99), p99_9), mean (avg), min, max, med (= p50);
- error_rate: failed / completed requests, a fraction (0.01) or a percentage (1%);
- rps: completed requests per second over the whole run;
- requests, ok_requests, failed_requests, dropped: counts.

Operators: <, <=, >, >=, ==, !=. With no completed request, latency and error_rate
thresholds fail (observed None): a run that measured nothing must not pass a gate.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LATENCY_METRICS: dict[str, str] = {
    "p50": "p50",
    "p90": "p90",
    "p95": "p95",
    "p99": "p99",
    "p99.9": "p99_9",
    "mean": "mean",
    "min": "min",
    "max": "max",
}
COUNT_METRICS = ("requests", "ok_requests", "failed_requests", "dropped")
RATE_METRICS = ("error_rate",)
THROUGHPUT_METRICS = ("rps",)
METRICS = (*LATENCY_METRICS, *RATE_METRICS, *THROUGHPUT_METRICS, *COUNT_METRICS)
ALIASES = {"avg": "mean", "med": "p50", "median": "p50", "p99_9": "p99.9", "p999": "p99.9"}

# Divisors, not factors: 300 / 1000 is exactly 0.3, 300 * 0.001 is not.
LATENCY_UNITS: dict[str, float] = {"us": 1e6, "ms": 1e3, "s": 1.0}
UNIT_ALIASES = {"µs": "us", "μs": "us"}

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

_METRIC = re.compile(r"p\(\s*([0-9]+(?:\.[0-9]+)?)\s*\)|[A-Za-z_][A-Za-z0-9_.]*")
_OP = re.compile(r"<=|>=|==|!=|<|>|=")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?")
_UNIT = re.compile(r"[A-Za-zµμ%]+")
_EXAMPLE = "e.g. 'p99 < 250ms', 'error_rate < 1%', 'rps > 900'"


class ThresholdError(ValueError):
    """A threshold that does not parse; `column` is 1-based."""

    def __init__(self, text: str, column: int, problem: str) -> None:
        super().__init__(f"loadtest threshold {text!r}, column {column}: {problem}")
        self.text = text
        self.column = column


@dataclass(frozen=True)
class Quantity:
    """A limit as written: `value` in `unit` ("us", "ms", "s" for latency, "%" or "" for
    error_rate, "" otherwise)."""

    value: float
    unit: str = ""

    @property
    def base(self) -> float:
        """In the summary's units: seconds, a fraction, a count or req/s."""
        if self.unit == "%":
            return self.value / 100
        return self.value / LATENCY_UNITS.get(self.unit, 1.0)


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    limit: Quantity

    @property
    def text(self) -> str:
        return render(self)


@dataclass(frozen=True)
class ThresholdResult:
    """`observed` and `limit` in the summary's units (seconds, fraction, count, req/s);
    `observed` is None when the run gives no value to compare (no request completed)."""

    text: str
    ok: bool
    observed: float | None
    limit: float
    metric: str = ""

    @property
    def observed_text(self) -> str:
        return "n/a" if self.observed is None else format_value(self.metric, self.observed)


def _number_text(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render(threshold: Threshold) -> str:
    """The canonical text; `parse(render(t)) == t`."""
    limit = threshold.limit
    return f"{threshold.metric} {threshold.op} {_number_text(limit.value)}{limit.unit}"


def format_value(metric: str, value: float) -> str:
    """For people: latencies in ms, rates in %, counts as integers."""
    if metric in LATENCY_METRICS:
        return f"{value * 1000:.3g}ms" if value < 1 else f"{value:.3g}s"
    if metric in RATE_METRICS:
        return f"{value * 100:.3g}%"
    if metric in COUNT_METRICS:
        return str(round(value))
    return f"{value:.1f}"


def _canonical_metric(raw: str, pct: str | None, text: str, column: int) -> str:
    name = f"p{float(pct):g}" if pct is not None else ALIASES.get(raw.lower(), raw.lower())
    if name in METRICS:
        return name
    if re.fullmatch(r"p[0-9.]+", name):
        problem = (
            f"percentile {raw!r} is not in the summary; use one of "
            f"{', '.join(k for k in LATENCY_METRICS if k.startswith('p'))}"
        )
    else:
        problem = f"unknown metric {raw!r}; use one of {', '.join(METRICS)}"
    raise ThresholdError(text, column, problem)


def parse(text: str) -> Threshold:
    """One threshold; ThresholdError names the column and the fix."""
    if not isinstance(text, str):
        raise ThresholdError(str(text), 1, f"expected a string like {_EXAMPLE}")
    pos = 0

    def skip() -> None:
        nonlocal pos
        while pos < len(text) and text[pos].isspace():
            pos += 1

    skip()
    m = _METRIC.match(text, pos)
    if m is None:
        raise ThresholdError(text, pos + 1, f"expected a metric name, {_EXAMPLE}")
    metric = _canonical_metric(m.group(0), m.group(1), text, pos + 1)
    pos = m.end()
    skip()
    m = _OP.match(text, pos)
    if m is None:
        raise ThresholdError(
            text, pos + 1, f"expected a comparison (<, <=, >, >=, ==, !=) after {metric!r}"
        )
    if m.group(0) == "=":
        raise ThresholdError(text, pos + 1, "'=' is not a comparison; use '=='")
    op = m.group(0)
    pos = m.end()
    skip()
    m = _NUMBER.match(text, pos)
    if m is None:
        sign = " (limits are never negative)" if text.startswith("-", pos) else ""
        raise ThresholdError(text, pos + 1, f"expected a number after {op!r}{sign}, {_EXAMPLE}")
    value = float(m.group(0))
    if not math.isfinite(value):
        raise ThresholdError(text, pos + 1, f"the limit {m.group(0)!r} is not a finite number")
    pos = m.end()
    unit_column = pos + 1
    unit = ""
    gap = pos
    while gap < len(text) and text[gap].isspace():
        gap += 1
    m = _UNIT.match(text, gap)
    # "300 us" is a unit; "900 and ..." is trailing text, reported as such below.
    if m is not None and (gap == pos or m.group(0) in {*LATENCY_UNITS, *UNIT_ALIASES, "%"}):
        unit = UNIT_ALIASES.get(m.group(0), m.group(0))
        unit_column = gap + 1
        pos = m.end()
    skip()
    if pos != len(text):
        raise ThresholdError(
            text, pos + 1, f"unexpected {text[pos:]!r}; one comparison per threshold"
        )
    _check_unit(text, unit_column, metric, unit)
    return Threshold(metric, op, Quantity(value, unit))


def _check_unit(text: str, column: int, metric: str, unit: str) -> None:
    if metric in LATENCY_METRICS:
        if unit not in LATENCY_UNITS:
            what = "needs a unit" if not unit else f"has an unknown unit {unit!r}"
            raise ThresholdError(
                text, column, f"the {metric} limit {what}; use us, ms or s (e.g. '250ms')"
            )
    elif metric in RATE_METRICS:
        if unit not in ("", "%"):
            raise ThresholdError(
                text, column, f"{metric} is a fraction; write 0.01 or 1%, not {unit!r}"
            )
    elif unit:
        raise ThresholdError(text, column, f"{metric} takes a plain number, not {unit!r}")


def parse_all(texts: Iterable[str]) -> list[Threshold]:
    return [parse(t) for t in texts]


def observe(metric: str, summary: Mapping[str, Any]) -> float | None:
    """The metric's value on a summary (or snapshot) dict; None when undefined."""
    requests = float(summary.get("requests", 0))
    errors = summary.get("errors") or {}
    failed = float(sum(errors.values()))
    if metric in LATENCY_METRICS:
        if requests <= 0:
            return None
        return float(summary["latency"][LATENCY_METRICS[metric]])
    if metric == "error_rate":
        return failed / requests if requests > 0 else None
    if metric == "rps":
        interval = float(summary.get("interval", 0.0))
        return requests / interval if interval > 0 else 0.0
    if metric == "requests":
        return requests
    if metric == "ok_requests":
        return float(summary.get("ok", requests - failed))
    if metric == "failed_requests":
        return failed
    if metric == "dropped":
        return float(summary.get("dropped", 0))
    raise KeyError(metric)


def evaluate(
    thresholds: Iterable[Threshold | str], summary: Mapping[str, Any]
) -> list[ThresholdResult]:
    """Each threshold against the summary, in order."""
    results = []
    for item in thresholds:
        threshold = parse(item) if isinstance(item, str) else item
        observed = observe(threshold.metric, summary)
        limit = threshold.limit.base
        ok = observed is not None and OPS[threshold.op](observed, limit)
        results.append(ThresholdResult(render(threshold), ok, observed, limit, threshold.metric))
    return results


def all_ok(results: Iterable[ThresholdResult]) -> bool:
    return all(r.ok for r in results)
