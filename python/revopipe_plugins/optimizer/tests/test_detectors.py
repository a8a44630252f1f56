"""Each detector on synthetic series: it reports the planted pattern, with its evidence,
and stays quiet on the same series without it."""

from __future__ import annotations

import numpy as np
import pytest

from revopipe.events import make_tags
from revopipe_plugins.optimizer.bottlenecks import (
    error_bursts,
    growing_functions,
    hot_functions,
    pipeline_losses,
    rising_tail,
    saturated_cpu,
)
from revopipe_plugins.optimizer.config import (
    BottleneckSettings,
    ChangePointWatch,
    LeakSettings,
    TrendWatch,
)
from revopipe_plugins.optimizer.leaks import leaks
from revopipe_plugins.optimizer.regressions import change_points, trends
from revopipe_plugins.optimizer.store import SeriesStore

T0 = 1_800_000_000.0
CFG = BottleneckSettings()


def store_with(
    name: str, values: list[float] | np.ndarray, tags: dict[str, str] | None = None, step=10.0
) -> SeriesStore:
    s = SeriesStore(["*"], history=10_000, max_series=100)
    add(s, name, values, tags, step)
    return s


def add(s: SeriesStore, name: str, values, tags=None, step=10.0, counter=False) -> None:
    for i, v in enumerate(values):
        s.add(name, make_tags(tags), T0 + i * step, float(v), counter=counter)


def noise(n: int, seed: int, level: float = 1.0, sd: float = 0.05) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, sd, n)


# -- store ---------------------------------------------------------------------------


def test_counters_are_stored_as_rates_and_a_reset_counts_from_zero() -> None:
    s = SeriesStore(["c"], history=10, max_series=10)
    for i, total in enumerate([0, 10, 30, 5, 15]):
        s.add("c", (), T0 + i * 2.0, total, counter=True)
    (series,) = s.select("c")
    assert list(series.values) == [5.0, 10.0, 2.5, 5.0]


def test_store_is_bounded_in_points_and_series() -> None:
    s = SeriesStore(["*"], history=5, max_series=2)
    for i in range(20):
        s.add("a", (), T0 + i, i)
        s.add("b", (), T0 + i, i)
        s.add("c", (), T0 + i, i)
    assert len(s) == 2 and s.overflow == 20
    assert list(s.select("a")[0].values) == [15, 16, 17, 18, 19]


def test_out_of_order_points_are_ignored() -> None:
    s = SeriesStore(["*"], history=5, max_series=2)
    for t in (3.0, 1.0, 3.0, 4.0):
        s.add("a", (), T0 + t, t)
    assert list(s.select("a")[0].times) == [T0 + 3.0, T0 + 4.0]


# -- change points and trends ---------------------------------------------------------


def test_a_latency_regression_is_reported_at_its_change_point() -> None:
    values = np.concatenate([noise(60, 1, 0.100, 0.005), noise(40, 2, 0.150, 0.005)])
    s = store_with("http.server.request.duration.p95", values)
    (f,) = change_points(s, [ChangePointWatch(metric="*.duration.p95")], pvalue=0.01)
    assert f.detector == "changepoint"
    changed_at = T0 + 60 * 10.0
    assert f.key.endswith(f"@{changed_at:.0f}")
    assert "rose 50 %" in f.title
    assert f.priority == "high" and f.confidence is not None and f.confidence >= 0.99
    assert float(f.evidence["mean_before"]) == pytest.approx(0.1, rel=0.05)
    assert float(f.evidence["mean_after"]) == pytest.approx(0.15, rel=0.05)


def test_an_improvement_is_not_a_regression() -> None:
    values = np.concatenate([noise(60, 1, 0.150, 0.005), noise(40, 2, 0.100, 0.005)])
    s = store_with("http.server.request.duration.p95", values)
    assert change_points(s, [ChangePointWatch(metric="*.p95")], pvalue=0.01) == []
    # unless lower is worse (throughput)
    found = change_points(s, [ChangePointWatch(metric="*.p95", higher_is_worse=False)], pvalue=0.01)
    assert len(found) == 1


def test_a_shift_below_min_change_is_not_reported() -> None:
    values = np.concatenate([noise(60, 1, 1.0, 0.002), noise(40, 2, 1.03, 0.002)])
    s = store_with("x.p95", values)
    assert change_points(s, [ChangePointWatch(metric="x.p95", min_change=0.1)], 0.01) == []


def test_noise_gives_no_change_point() -> None:
    s = store_with("x.p95", noise(200, 7))
    assert change_points(s, [ChangePointWatch(metric="x.p95")], pvalue=0.01) == []


def test_disk_filling_up_is_forecast() -> None:
    # 1 % per hour from 50 %: 95 % in 45 h, over a 48 h horizon
    hours = np.arange(0, 24)
    s = store_with(
        "system.filesystem.utilization",
        0.50 + 0.01 * hours,
        {"mountpoint": "/"},
        step=3600.0,
    )
    (f,) = trends(
        s, [TrendWatch(metric="system.filesystem.utilization", threshold=0.95, horizon="48h")]
    )
    assert f.title == "system.filesystem.utilization reaches 0.95 in 22.0 h"
    assert 'mountpoint="/"' in f.evidence["series"]
    # the same series is no finding with a 12 h horizon, nor when flat
    assert trends(s, [TrendWatch(metric="system.*", threshold=0.95, horizon="12h")]) == []
    flat = store_with("system.filesystem.utilization", [0.5] * 24, step=3600.0)
    assert trends(flat, [TrendWatch(metric="system.*", threshold=0.95)]) == []


def test_a_few_minutes_of_points_do_not_forecast_hours() -> None:
    # the same 1 %-per-step climb over 2 minutes: too short to read a trend from (min_span),
    # and hours away would be 100x what was seen (max_extrapolation)
    s = store_with("system.memory.utilization", 0.5 + 0.01 * np.arange(24), step=5.0)
    watch = TrendWatch(metric="system.memory.utilization", threshold=0.95, horizon="6h")
    assert trends(s, [watch]) == []
    short = TrendWatch(
        metric="system.memory.utilization", threshold=0.95, horizon="6h", min_span="1m"
    )
    (f,) = trends(s, [short])  # 22 steps of 5 s ahead: within 20x the 115 s seen
    assert f.title == "system.memory.utilization reaches 0.95 in 110 s"


# -- leaks ----------------------------------------------------------------------------


def test_steady_memory_growth_is_a_leak_and_a_stable_working_set_is_not() -> None:
    t = np.arange(120)
    leaking = 200e6 + 1e6 * t + np.random.default_rng(3).normal(0, 2e5, 120)
    stable = 200e6 + np.random.default_rng(4).normal(0, 2e6, 120)
    s = SeriesStore(["*"], history=1000, max_series=10)
    add(s, "process.memory.usage", leaking, {"process.pid": "1"})
    add(s, "process.memory.usage", stable, {"process.pid": "2"})
    (f,) = leaks(s, LeakSettings())
    assert f.key == 'leak:process.memory.usage{process.pid="1"}'
    assert f.title.startswith("process 1: process.memory.usage grows steadily")
    assert f.confidence is not None and f.confidence > 0.99


def test_one_jump_in_memory_is_not_a_leak() -> None:
    values = np.where(np.arange(120) < 60, 200e6, 260e6) + np.random.default_rng(5).normal(
        0, 2e5, 120
    )
    s = store_with("process.memory.usage", values, {"process.pid": "1"})
    assert leaks(s, LeakSettings()) == []


# -- bottlenecks ----------------------------------------------------------------------


def profiled(samples_per_window: float, windows: int = 6) -> SeriesStore:
    """A store with the profiler's cumulative sample counter of process 7 (10 s windows)."""
    s = SeriesStore(["*"], history=100, max_series=10)
    add(s, "profiler.samples", np.arange(windows + 1) * samples_per_window, {"process.pid": "7"},
        counter=True)  # fmt: skip
    return s


def test_hot_function_above_the_share() -> None:
    s = profiled(samples_per_window=900)
    add(
        s,
        "profiler.function.self_share",
        [0.7] * 6,
        {"code.function": "app:hot", "process.pid": "7"},
    )
    add(
        s,
        "profiler.function.self_share",
        [0.1] * 6,
        {"code.function": "app:cold", "process.pid": "7"},
    )
    (f,) = hot_functions(s, CFG)
    assert f.title == "app:hot takes 70 % of CPU samples" and f.priority == "high"


def test_shares_of_an_idle_process_are_not_hot() -> None:
    s = profiled(samples_per_window=30)  # 3 samples/s: 3 % of a core at 100 Hz
    add(
        s,
        "profiler.function.self_share",
        [0.7] * 6,
        {"code.function": "app:hot", "process.pid": "7"},
    )
    assert hot_functions(s, CFG) == []


def test_function_share_growth_over_its_baseline() -> None:
    f_tags = {"code.function": "app:f", "process.pid": "7"}
    s = profiled(samples_per_window=900, windows=15)
    add(s, "profiler.function.self_share", [0.1] * 10 + [0.3] * 5, f_tags)
    (f,) = growing_functions(s, CFG)
    assert f.title == "app:f grew from 10 % to 30 % of CPU samples"
    steady = profiled(samples_per_window=900, windows=15)
    add(steady, "profiler.function.self_share", [0.3] * 15, f_tags)
    assert growing_functions(steady, CFG) == []


def test_rising_tail_latency() -> None:
    s = SeriesStore(["*"], history=100, max_series=10)
    add(s, "rpc.duration.p50", [0.01] * 20)
    add(s, "rpc.duration.p99", [0.03] * 15 + [0.08] * 5)
    (f,) = rising_tail(s, CFG)
    assert f.title == "rpc.duration: p99/p50 rose from 3.0x to 8.0x"
    calm = SeriesStore(["*"], history=100, max_series=10)
    add(calm, "rpc.duration.p50", [0.01] * 20)
    add(calm, "rpc.duration.p99", [0.03] * 20)
    assert rising_tail(calm, CFG) == []


def test_saturated_cpu_with_flat_throughput() -> None:
    s = SeriesStore(["*"], history=100, max_series=10)
    add(s, "system.cpu.utilization", [0.5] * 10 + [0.97] * 5)
    add(s, "http.server.request.duration.rate", [1000.0] * 15)
    (f,) = saturated_cpu(s, CFG)
    assert f.detector == "cpu_saturated" and "CPU at 97 %" in f.title
    # throughput still rising with the CPU: not (yet) a bottleneck
    rising = SeriesStore(["*"], history=100, max_series=10)
    add(rising, "system.cpu.utilization", [0.97] * 15)
    add(rising, "http.server.request.duration.rate", [1000.0] * 10 + [1500.0] * 5)
    assert saturated_cpu(rising, CFG) == []


def test_error_burst_against_the_usual_rate() -> None:
    s = SeriesStore(["*"], history=100, max_series=10)
    totals = np.cumsum([1.0] * 15 + [50.0] * 5) * 10  # 1/s, then 50/s
    add(s, "app.errors", totals, counter=True)
    (f,) = error_bursts(s, CFG)
    assert f.title == "errors burst: app.errors at 50/s (usually 1/s)"
    steady = SeriesStore(["*"], history=100, max_series=10)
    add(steady, "app.errors", np.cumsum([1.0] * 20) * 10, counter=True)
    assert error_bursts(steady, CFG) == []


def test_pipeline_dropping_events() -> None:
    s = SeriesStore(["*"], history=100, max_series=10)
    add(s, "revopipe.component.dropped", np.cumsum([0] * 5 + [100] * 5), {"component": "out"},
        counter=True)  # fmt: skip
    add(s, "revopipe.component.dropped", [0] * 10, {"component": "ok"}, counter=True)
    (f,) = pipeline_losses(s, CFG)
    assert f.title == "component 'out' drops 10 events/s"
