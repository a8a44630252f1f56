"""A scraped exposition (Prometheus text 0.0.4 or OpenMetrics) as metric rows.

Every sample keeps the name Prometheus gives it (`http_requests_total`, `x_bucket` with its
`le` tag, `x_sum`, `x_count`, a summary's `x{quantile="0.9"}`), so a filter or alert rule
written against the PromQL name matches. The kind follows the family's type: a counter's
`_total`, a histogram's or summary's `_bucket`/`_count`/`_sum` are counters (cumulative
totals, as revopipe counters are); everything else is a gauge. `_created` samples (a
timestamp, not a value) are skipped. The unit is "1": Prometheus names carry their unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.metrics_core import Metric as Family
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.samples import Timestamp

from revopipe.batch import MetricBatch, MetricBatchBuilder
from revopipe.events import MetricKind

_COUNTER_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}


def _kind(family_type: str, family_name: str, sample_name: str) -> MetricKind | None:
    if sample_name.endswith("_created") and sample_name != family_name:
        return None
    suffixes = _COUNTER_SUFFIXES.get(family_type)
    if suffixes and sample_name != family_name and sample_name.endswith(suffixes):
        return MetricKind.COUNTER
    if family_type == "counter" and sample_name == family_name:
        # the 0.0.4 format allows a counter sample without _total
        return MetricKind.COUNTER
    return MetricKind.GAUGE


def _ns(ts: Timestamp | float | None, default: int) -> int:
    if ts is None:
        return default
    if isinstance(ts, Timestamp):
        return ts.sec * 1_000_000_000 + ts.nsec
    return int(ts * 1e9)


def families(text: str, openmetrics: bool) -> Iterable[Family]:
    """The parsed families; raises (ValueError and others) on malformed input."""
    if openmetrics:
        # the OpenMetrics parser has no annotations; it yields the same Metric objects
        parsed: Iterable[Family] = openmetrics_families(text)  # type: ignore[no-untyped-call]
        return parsed
    return text_families(text)


def to_metrics(
    text: str,
    openmetrics: bool,
    target_tags: Mapping[str, str],
    honor_labels: bool,
    now_ns: int,
) -> MetricBatch:
    """Parse a whole exposition into rows tagged with `target_tags`. All or nothing:
    malformed input raises and yields no rows, as Prometheus itself does.

    A scraped label named like a target tag (`instance`, `job`, a configured label) is
    renamed `exported_<name>` unless `honor_labels`, in which case the scraped one wins."""
    b = MetricBatchBuilder(default_ts=now_ns)
    target = dict(target_tags)
    for fam in families(text, openmetrics):
        for s in fam.samples:
            kind = _kind(fam.type, fam.name, s.name)
            if kind is None:
                continue
            if honor_labels:
                tags = {**target, **s.labels}
            elif target.keys().isdisjoint(s.labels):
                tags = {**s.labels, **target}
            else:
                tags = dict(target)
                for k, v in s.labels.items():
                    tags["exported_" + k if k in target else k] = v
            b.add(s.name, float(s.value), kind, "1", tags, _ns(s.timestamp, now_ns))
    return b.build()


def to_metrics_or_error(
    text: str,
    openmetrics: bool,
    target_tags: Mapping[str, str],
    honor_labels: bool,
    now_ns: int,
) -> tuple[MetricBatch, str | None]:
    """`to_metrics`, with malformed input as an error message instead of an exception:
    the parsers raise ValueError, IndexError, ... on garbage, and a target's garbage must
    never stop the source."""
    try:
        return to_metrics(text, openmetrics, target_tags, honor_labels, now_ns), None
    except Exception as exc:
        return MetricBatch(), f"not a valid exposition ({type(exc).__name__}: {exc})"
