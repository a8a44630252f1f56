"""Bottlenecks read from the data: hot and growing functions (profiler), a rising tail
(p99/p50), CPU saturated while throughput is flat, error bursts, and components of the
pipeline dropping or dead-lettering events.

Each rule compares the latest `recent` points of a series with its earlier points (the
baseline), so one odd window does not make a finding and a level that was always there is
reported as a level, not as a change.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from revopipe.actions import Series
from revopipe_plugins.optimizer.config import BottleneckSettings
from revopipe_plugins.optimizer.findings import Finding, fmt, priority_for
from revopipe_plugins.optimizer.store import SeriesStore, series_label

SELF_SHARE = "profiler.function.self_share"
SAMPLES = "profiler.samples"
COMPONENT_LOSSES = ("revopipe.component.dropped", "revopipe.component.dead_lettered")


def _split(s: Series, recent: int) -> tuple[list[float], list[float]] | None:
    """(baseline, recent) values, or None when there are too few points for both."""
    values = list(s.values)
    if len(values) < recent + 2:
        return None
    return values[:-recent], values[-recent:]


def _function(s: Series) -> str:
    return dict(s.tags).get("code.function", s.name)


def _busy_enough(store: SeriesStore, s: Series, cfg: BottleneckSettings) -> bool:
    """Whether the profiled process used enough CPU for its shares to mean something."""
    pid = dict(s.tags).get("process.pid")
    counts = store.select(SAMPLES, {"process.pid": pid} if pid else None)
    if not counts or not counts[0].values:
        return cfg.min_cpu_samples <= 0
    recent = list(counts[0].values)[-cfg.recent :]
    return statistics.fmean(recent) >= cfg.min_cpu_samples


def hot_functions(store: SeriesStore, cfg: BottleneckSettings) -> list[Finding]:
    out = []
    for s in store.select(SELF_SHARE):
        if not s.values or not _busy_enough(store, s, cfg):
            continue
        window = list(s.values)[-cfg.recent :]
        share = statistics.fmean(window)
        if share < cfg.hot_share:
            continue
        fn = _function(s)
        out.append(
            Finding(
                key=f"hot:{series_label(s.name, s.tags)}",
                detector="hot_function",
                title=f"{fn} takes {share * 100:.0f} % of CPU samples",
                action=(
                    f"optimise {fn} first: it is the largest self-time share; look at its "
                    "callers in the flame graph (`revopipe profile -o out.speedscope.json`)"
                ),
                priority=priority_for(share, 0.5, 0.3),
                risk="low",
                evidence={
                    "series": series_label(s.name, s.tags),
                    "self_share": f"{share:.3f}",
                    "windows": str(len(window)),
                    "threshold": f"{cfg.hot_share:g}",
                },
            )
        )
    return out


def growing_functions(store: SeriesStore, cfg: BottleneckSettings) -> list[Finding]:
    out = []
    for s in store.select(SELF_SHARE):
        parts = _split(s, cfg.recent)
        if parts is None or not _busy_enough(store, s, cfg):
            continue
        base, now = statistics.fmean(parts[0]), statistics.fmean(parts[1])
        if now - base < cfg.share_growth:
            continue
        fn = _function(s)
        out.append(
            Finding(
                key=f"share_growth:{series_label(s.name, s.tags)}",
                detector="share_growth",
                title=f"{fn} grew from {base * 100:.0f} % to {now * 100:.0f} % of CPU samples",
                action=(
                    f"{fn} costs more than it did: check recent changes to it and its inputs "
                    "(data size, cache hit rate) and compare profiles"
                ),
                priority=priority_for(now - base, 0.3, 0.15),
                risk="low",
                evidence={
                    "series": series_label(s.name, s.tags),
                    "baseline_share": f"{base:.3f}",
                    "recent_share": f"{now:.3f}",
                    "baseline_windows": str(len(parts[0])),
                    "recent_windows": str(len(parts[1])),
                },
            )
        )
    return out


def rising_tail(store: SeriesStore, cfg: BottleneckSettings) -> list[Finding]:
    """p99/p50 of every histogram the `aggregate` processor summarises (`x.p99`, `x.p50`)."""
    out = []
    for name in store.names():
        if not name.endswith(".p99"):
            continue
        base_name = name.removesuffix(".p99")
        for p99 in store.select(name):
            p50s = [s for s in store.select(f"{base_name}.p50") if s.tags == p99.tags]
            if not p50s:
                continue
            by_time = dict(zip(p50s[0].times, p50s[0].values, strict=True))
            ratio = [
                v / by_time[t]
                for t, v in zip(p99.times, p99.values, strict=True)
                if by_time.get(t, 0.0) > 0.0
            ]
            if len(ratio) < cfg.recent + 2:
                continue
            base = statistics.median(ratio[: -cfg.recent])
            now = statistics.median(ratio[-cfg.recent :])
            if base <= 0 or now / base - 1.0 < cfg.tail_ratio_growth:
                continue
            label = series_label(base_name, p99.tags)
            out.append(
                Finding(
                    key=f"tail:{label}",
                    detector="tail_latency",
                    title=f"{base_name}: p99/p50 rose from {base:.1f}x to {now:.1f}x",
                    action=(
                        "the slowest requests got slower while the typical one did not: look "
                        "for queueing, lock contention, GC pauses or one slow dependency "
                        "(the exemplars of the slow buckets link to their traces)"
                    ),
                    priority=priority_for(now / base - 1.0, 1.0, 0.5),
                    risk="low",
                    evidence={
                        "series": label,
                        "baseline_ratio": f"{base:.2f}",
                        "recent_ratio": f"{now:.2f}",
                        "windows": str(len(ratio)),
                    },
                )
            )
    return out


def _flat(series: Sequence[Series], recent: int) -> tuple[float, float] | None:
    """(baseline, recent) total rate when it changed by under 5 %; None otherwise."""
    base_total = now_total = 0.0
    seen = False
    for s in series:
        parts = _split(s, recent)
        if parts is None:
            continue
        seen = True
        base_total += statistics.fmean(parts[0])
        now_total += statistics.fmean(parts[1])
    if not seen or base_total <= 0:
        return None
    if abs(now_total / base_total - 1.0) >= 0.05:
        return None
    return base_total, now_total


def saturated_cpu(store: SeriesStore, cfg: BottleneckSettings) -> list[Finding]:
    cpu = [s for s in store.select(cfg.cpu_metric) if not s.tags]
    if not cpu or len(cpu[0].values) < cfg.recent:
        return []
    busy = statistics.fmean(list(cpu[0].values)[-cfg.recent :])
    if busy < cfg.cpu_saturated:
        return []
    out = []
    for pattern in cfg.throughput:
        series = store.select_glob(pattern)
        flat = _flat(series, cfg.recent)
        if flat is None:
            continue
        out.append(
            Finding(
                key=f"cpu_saturated:{pattern}",
                detector="cpu_saturated",
                title=f"CPU at {busy * 100:.0f} % while {pattern} stays flat at {fmt(flat[1])}/s",
                action=(
                    "the service is CPU-bound: more load will only queue. Profile the hot "
                    "path, or add cores/instances before the next traffic rise"
                ),
                priority="high",
                risk="low",
                evidence={
                    "cpu_utilization": f"{busy:.3f}",
                    "throughput_series": pattern,
                    "throughput_baseline": fmt(flat[0]),
                    "throughput_recent": fmt(flat[1]),
                },
            )
        )
    return out


def error_bursts(store: SeriesStore, cfg: BottleneckSettings) -> list[Finding]:
    out = []
    for pattern in cfg.errors:
        for s in store.select_glob(pattern):
            parts = _split(s, cfg.recent)
            if parts is None:
                continue
            base = statistics.median(parts[0])
            now = statistics.fmean(parts[1])
            if now < cfg.min_error_rate or now < cfg.burst_factor * max(base, 1e-9):
                continue
            label = series_label(s.name, s.tags)
            out.append(
                Finding(
                    key=f"errors:{label}",
                    detector="error_burst",
                    title=f"errors burst: {s.name} at {fmt(now)}/s (usually {fmt(base)}/s)",
                    action=(
                        "look at what started failing (recent deploys, a dependency, "
                        "saturation); the traces with error status show where"
                    ),
                    priority="high",
                    risk="low",
                    evidence={
                        "series": label,
                        "baseline_rate": fmt(base),
                        "recent_rate": fmt(now),
                        "factor": f"{now / base:.1f}" if base > 0 else "inf",
                    },
                )
            )
    return out


def pipeline_losses(store: SeriesStore, cfg: BottleneckSettings) -> list[Finding]:
    """Components of this pipeline dropping (a full `drop_newest` edge) or dead-lettering."""
    out = []
    for name in COMPONENT_LOSSES:
        for s in store.select(name):
            recent = list(s.values)[-cfg.recent :]
            if len(recent) < 2 or statistics.fmean(recent) <= 0.0:
                continue
            component = dict(s.tags).get("component", "?")
            rate = statistics.fmean(recent)
            what = "drops" if name.endswith("dropped") else "dead-letters"
            out.append(
                Finding(
                    key=f"losses:{name}:{component}",
                    detector="pipeline_losses",
                    title=f"component {component!r} {what} {fmt(rate)} events/s",
                    action=(
                        f"give {component!r} room: raise its `buffer`, let a sink merge "
                        "queued batches (`batch_max`, the optimizer's sink_batch action), or "
                        "fix the failing writes (`revopipe top` shows its last error)"
                    ),
                    priority="high",
                    risk="low",
                    evidence={"series": series_label(s.name, s.tags), "rate": fmt(rate)},
                )
            )
    return out


DETECTORS = (
    hot_functions,
    growing_functions,
    rising_tail,
    saturated_cpu,
    error_bursts,
    pipeline_losses,
)
