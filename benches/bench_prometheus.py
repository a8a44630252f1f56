"""Rendering `/metrics`: revopipe's `prometheus` sink vs prometheus_client's
`generate_latest`, over the same series, in the same run; and parsing a scrape.

Series: --series split in thirds between counters, gauges and histograms (OpenTelemetry's
14 seconds buckets, so 17 samples each), two labels each. prometheus_client holds the same
values in a CollectorRegistry (`_created` samples disabled so both expose the same lines).

(a) render after every series changed (the usual case when a source reports each interval
    and Prometheus scrapes each interval): the sink's caches are all invalid;
(b) render after 10 % of the series changed; (c) render with nothing changed (a second
    scraper, or a scrape faster than the source);
    prometheus_client formats everything on every scrape, so its figure is the same for all
    three. Both text 0.0.4 and OpenMetrics are timed. Median of --repeat runs each.
(d) scrape parsing: the rendered text through the `prometheus_scrape` source's
    `to_metrics` (prometheus_client's parser + rows) vs prometheus_client's parser alone.

    python benches/bench_prometheus.py [--series 9000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import time
from collections.abc import Callable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.parser import text_string_to_metric_families

from revopipe.batch import MetricBatch, MetricBatchBuilder
from revopipe.events import MetricKind
from revopipe.wire.prometheus import SECONDS_BUCKETS, Format, default_buckets
from revopipe_plugins.prometheus.exposition import Exposition
from revopipe_plugins.prometheus_scrape.parse import to_metrics

C, G, H = MetricKind.COUNTER, MetricKind.GAUGE, MetricKind.HISTOGRAM


def labels_of(i: int) -> dict[str, str]:
    return {"route": f"/api/v1/items/{i % 50}", "instance_id": str(i)}


def rows(per_kind: int, touched: float, rng: random.Random) -> MetricBatch:
    """One update of a fraction of the series: new counter totals and gauge values, one
    observation per histogram."""
    b = MetricBatchBuilder()
    for i in range(per_kind):
        if rng.random() >= touched:
            continue
        tags = labels_of(i)
        b.add("app.requests", float(rng.randrange(1, 10**6)), C, "{request}", tags)
        b.add("app.queue.depth", rng.random() * 100, G, "1", tags)
        b.add("http.server.request.duration", rng.lognormvariate(-4, 1), H, "s", tags)
    return b.build()


def peer_registry(per_kind: int, rng: random.Random) -> CollectorRegistry:
    reg = CollectorRegistry()
    names = ["route", "instance_id"]
    c = Counter("app_requests", "app.requests ({request})", names, registry=reg)
    g = Gauge("app_queue_depth", "app.queue.depth", names, registry=reg)
    h = Histogram(
        "http_server_request_duration_seconds",
        "http.server.request.duration (s)",
        names,
        buckets=SECONDS_BUCKETS,
        registry=reg,
    )
    for i in range(per_kind):
        lv = labels_of(i)
        c.labels(**lv).inc(float(rng.randrange(1, 10**6)))
        g.labels(**lv).set(rng.random() * 100)
        h.labels(**lv).observe(rng.lognormvariate(-4, 1))
    return reg


def median_time(fn: Callable[[], object], repeat: int, before: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        before()
        gc.collect()  # a collection left over from setup lands on neither side
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=9000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    per_kind = args.series // 3
    rng = random.Random(11)
    prometheus_client.disable_created_metrics()

    exp = Exposition(default_buckets, 3600)
    t0 = time.perf_counter()
    exp.add_metrics(rows(per_kind, 1.0, rng))
    first_write = time.perf_counter() - t0
    all_rows = rows(per_kind, 1.0, rng)
    some_rows = rows(per_kind, 0.1, rng)
    reg = peer_registry(per_kind, rng)

    text = exp.render(Format.TEXT).decode()
    peer_text = prometheus_client.generate_latest(reg).decode()
    lines = sum(1 for ln in text.splitlines() if not ln.startswith("#"))
    peer_lines = sum(1 for ln in peer_text.splitlines() if not ln.startswith("#"))

    def nothing() -> None:
        return None

    results: list[tuple[str, float, float, float]] = []
    for fmt, peer in [
        (Format.TEXT, lambda: prometheus_client.generate_latest(reg)),
        (Format.OPENMETRICS, lambda: om_exposition.generate_latest(reg)),
    ]:

        def render(fmt: Format = fmt) -> bytes:
            return exp.render(fmt)

        peer_s = median_time(peer, args.repeat, nothing)
        all_s = median_time(render, args.repeat, lambda: exp.add_metrics(all_rows))
        some_s = median_time(render, args.repeat, lambda: exp.add_metrics(some_rows))
        none_s = median_time(render, args.repeat, nothing)
        results.append((fmt.value, all_s, some_s, none_s))
        results.append((f"{fmt.value} peer", peer_s, peer_s, peer_s))

    write_s = median_time(lambda: exp.add_metrics(all_rows), args.repeat, nothing)

    # scrape parsing, on the text this sink renders
    n_samples = lines + 1  # + revopipe_prometheus_series
    ours_parse = median_time(
        lambda: to_metrics(text, False, {"job": "j", "instance": "i:1"}, False, 1),
        max(1, args.repeat // 2),
        nothing,
    )
    peer_parse = median_time(
        lambda: [f.samples for f in text_string_to_metric_families(text)],
        max(1, args.repeat // 2),
        nothing,
    )

    print(f"machine: {platform.machine()} python {platform.python_version()}, one thread")
    print(
        f"series: {args.series:,} ({per_kind:,} counters, gauges and histograms with "
        f"{len(SECONDS_BUCKETS)} bounds); samples: revopipe {lines:,}, prometheus_client "
        f"{peer_lines:,}; text bytes {len(text):,} vs {len(peer_text):,}"
    )
    print()
    print("| render /metrics | every series changed | 10 % changed | nothing changed |")
    print("| --- | ---: | ---: | ---: |")
    for name, a, b, c in results:
        who = "prometheus_client `generate_latest`" if name.endswith("peer") else "revopipe sink"
        fmt_name = name.split()[0]
        print(f"| {who} ({fmt_name}) | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {c * 1e3:.2f} ms |")
    print()
    for i in range(0, len(results), 2):
        fmt_name, a, b, c = results[i]
        peer = results[i + 1][1]
        print(
            f"ratio prometheus_client / revopipe ({fmt_name}): every series changed "
            f"{peer / a:.1f}x, 10 % changed {peer / b:.1f}x, nothing changed {peer / c:.0f}x"
        )
    print()
    print(
        f"sink write: {len(all_rows):,} rows in {write_s * 1e3:.1f} ms "
        f"({len(all_rows) / write_s:,.0f} rows/s; first write creating the series "
        f"{first_write * 1e3:.1f} ms)"
    )
    print(
        f"scrape parse of that text: prometheus_scrape `to_metrics` "
        f"{n_samples / ours_parse:,.0f} samples/s, prometheus_client parser alone "
        f"{n_samples / peer_parse:,.0f} samples/s (ratio {peer_parse / ours_parse:.2f})"
    )


if __name__ == "__main__":
    main()
