"""The aggregate processor: window boundaries, late events, empty windows, counter resets,
percentiles against a sorted reference, snapshot merging and the cardinality guard."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe import Batch, MetricBatch, MetricKind, _core
from revopipe.batch import MetricBatchBuilder
from revopipe.events import HistogramSnapshot, Span
from revopipe.testing import make
from revopipe_plugins.aggregate.output import stat_name
from revopipe_plugins.aggregate.processor import AggregateProcessor

S = 1_000_000_000
T0 = 1_800_000_000 * S  # a window boundary for 10 s windows


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def processor(tmp_path: Path, clock: Clock, **config: object) -> AggregateProcessor:
    p = make(
        AggregateProcessor,
        {"inputs": ["x"], "window": "10s", "grace": "0s", **config},
        tmp_path,
        name="agg",
    )
    p.clock = clock
    return p


def rows(*items: tuple[str, float, MetricKind, int, dict[str, str] | None]) -> Batch:
    b = MetricBatchBuilder()
    for name, value, kind, ts, tags in items:
        b.add(name, value, kind, "s" if kind is MetricKind.HISTOGRAM else "1", tags or {}, ts)
    return Batch(b.build())


def values_of(batch: Batch | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert batch is not None
    m = batch.metrics
    return {(n, t): v for n, t, v in zip(m.names, m.tags, m.values, strict=True)}


H, C, G = MetricKind.HISTOGRAM, MetricKind.COUNTER, MetricKind.GAUGE
pytestmark = pytest.mark.anyio


async def test_boundary_event_opens_the_next_window(tmp_path: Path) -> None:
    clock = Clock(T0)
    p = processor(tmp_path, clock)
    await p.start()
    await p.process(
        rows(
            ("g", 1.0, G, T0 - 1, None),
            ("g", 2.0, G, T0, None),
            ("g", 3.0, G, T0 + 10 * S - 1, None),
        )
    )
    clock.now = T0 + 10 * S  # closes [T0-10s, T0) and [T0, T0+10s)
    out = await p.tick()
    assert out is not None
    m = out.metrics
    last = [
        (v, ts) for n, v, ts in zip(m.names, m.values, m.timestamps, strict=True) if n == "g.last"
    ]
    assert last == [(1.0, T0), (3.0, T0 + 10 * S)]  # stamped with each window's end


async def test_windows_close_only_after_grace(tmp_path: Path) -> None:
    clock = Clock(T0 + 5 * S)
    p = processor(tmp_path, clock, grace="2s")
    await p.start()
    await p.process(rows(("g", 1.0, G, T0 + S, None)))
    clock.now = T0 + 11 * S
    assert await p.tick() is None  # within grace
    clock.now = T0 + 12 * S
    assert values_of(await p.tick())[("g.last", ())] == 1.0


async def test_empty_windows_emit_nothing(tmp_path: Path) -> None:
    clock = Clock(T0)
    p = processor(tmp_path, clock)
    await p.start()
    await p.process(rows(("g", 1.0, G, T0, None)))
    clock.now = T0 + 10 * S
    assert await p.tick() is not None
    for k in range(2, 5):
        clock.now = T0 + k * 10 * S
        assert await p.tick() is None


@pytest.mark.parametrize(("policy", "expected_last"), [("drop", 5.0), ("current", 9.0)])
async def test_late_events_are_counted_and_follow_the_policy(
    tmp_path: Path, policy: str, expected_last: float
) -> None:
    clock = Clock(T0)
    p = processor(tmp_path, clock, late=policy)
    await p.start()
    await p.process(rows(("g", 1.0, G, T0 + S, None)))
    clock.now = T0 + 10 * S
    await p.tick()  # [T0, T0+10s) is closed now
    await p.process(rows(("g", 5.0, G, T0 + 11 * S, None), ("g", 9.0, G, T0 + 2 * S, None)))
    out = await p.flush()
    v = values_of(out)
    assert v[("g.last", ())] == expected_last
    assert v[("revopipe.aggregate.late_events", (("component", "agg"),))] == 1


async def test_counter_increase_rate_and_reset(tmp_path: Path) -> None:
    clock = Clock(T0)
    p = processor(tmp_path, clock)
    await p.start()
    # baseline 100, +20, reset to 5 (counts 5), +10 -> increase 35 over 10 s
    await p.process(
        rows(*[("c", v, C, T0 + i * S, None) for i, v in enumerate([100.0, 120.0, 5.0, 15.0])])
    )
    clock.now = T0 + 10 * S
    v = values_of(await p.tick())
    assert v[("c.sum", ())] == 35.0
    assert v[("c.rate", ())] == pytest.approx(3.5)
    # the next window's increase starts from the last value seen (15)
    await p.process(rows(("c", 40.0, C, T0 + 12 * S, None)))
    v = values_of(await p.flush())
    assert v[("c.sum", ())] == 25.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1e-4, max_value=100.0), min_size=1, max_size=400))
def test_percentiles_match_a_sorted_reference(
    tmp_path_factory: pytest.TempPathFactory, values: list[float]
) -> None:
    import anyio

    async def go() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        p = processor(tmp_path_factory.mktemp("agg"), Clock(T0))
        await p.start()
        await p.process(
            rows(*[("lat", v, H, T0 + i, {"route": "/"}) for i, v in enumerate(values)])
        )
        return values_of(await p.flush())

    v = anyio.run(go)
    tags = (("route", "/"),)
    ordered = sorted(values)
    assert v[("lat.count", tags)] == len(values)
    assert v[("lat.sum", tags)] == pytest.approx(math.fsum(values), rel=1e-9)
    assert v[("lat.min", tags)] == ordered[0] and v[("lat.max", tags)] == ordered[-1]
    for q in (50.0, 90.0, 95.0, 99.0, 99.9):
        # HdrHistogram's rank: the smallest value with at least q% of values at or below it
        ref = ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
        got = v[(f"lat.{stat_name(q)}", tags)]
        assert abs(got - ref) <= ref * 1e-3 + 1e-6, (q, got, ref)


async def test_snapshots_from_several_agents_merge_exactly(tmp_path: Path) -> None:
    agents = [[0.001 * (i + 1) for i in range(k, 300, 3)] for k in range(3)]
    snapshots: list[HistogramSnapshot] = []
    for values in agents:  # each agent aggregates its own share
        p = processor(tmp_path, Clock(T0))
        await p.start()
        await p.process(rows(*[("lat", v, H, T0 + i, None) for i, v in enumerate(values)]))
        out = await p.flush()
        assert out is not None
        snapshots += [e for e in out.events if isinstance(e, HistogramSnapshot)]
    assert len(snapshots) == 3

    central = processor(tmp_path, Clock(T0))
    await central.start()
    await central.process(Batch(MetricBatch(), tuple(snapshots)))
    merged = values_of(await central.flush())

    single = processor(tmp_path, Clock(T0))
    await single.start()
    everything = [v for values in agents for v in values]
    await single.process(rows(*[("lat", v, H, T0 + i, None) for i, v in enumerate(everything)]))
    reference = values_of(await single.flush())
    for stat in ("count", "sum", "min", "max", "p50", "p90", "p99", "p99_9"):
        assert merged[(f"lat.{stat}", ())] == pytest.approx(reference[(f"lat.{stat}", ())]), stat


async def test_exemplars_travel_with_the_merged_snapshot(tmp_path: Path) -> None:
    h = _core.histogram("agg.ex.lat", "s")
    h.record_exemplar(0.5, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    h.record(0.01)
    (r,) = [x for x in _core.collect_instruments() if x["name"] == "agg.ex.lat"]
    snap = HistogramSnapshot.from_core(r, T0, T0 + S)
    p = processor(tmp_path, Clock(T0))
    await p.start()
    await p.process(Batch(MetricBatch(), (snap,)))
    out = await p.flush()
    assert out is not None
    (merged,) = [e for e in out.events if isinstance(e, HistogramSnapshot)]
    assert merged.count == 2
    assert [(e.value, e.trace_id) for e in merged.exemplars] == [
        (0.5, "4bf92f3577b34da6a3ce929d0e0e4736")
    ]


async def test_cardinality_guard_sends_excess_tag_sets_to_one_overflow_series(
    tmp_path: Path,
) -> None:
    p = processor(tmp_path, Clock(T0), max_series_per_metric=5)
    await p.start()
    await p.process(rows(*[("g", float(i), G, T0, {"user": str(i)}) for i in range(12)]))
    v = values_of(await p.flush())
    per_user = [k for k in v if k[0] == "g.last" and k[1] and k[1][0][0] == "user"]
    assert len(per_user) == 5
    assert ("g.last", (("revopipe.overflow", "true"),)) in v
    assert v[("revopipe.aggregate.overflow_events", (("component", "agg"),))] == 7


async def test_sets_count_distinct_values(tmp_path: Path) -> None:
    p = processor(tmp_path, Clock(T0))
    await p.start()
    await p.process(
        rows(*[("users", float(u), MetricKind.SET, T0, None) for u in [1, 2, 2, 3, 3, 3]])
    )
    assert values_of(await p.flush())[("users.distinct", ())] == 3


def test_bad_percentile_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"within \[0, 100\]"):
        make(AggregateProcessor, {"inputs": ["x"], "percentiles": [50, 101]}, tmp_path)


async def test_events_it_does_not_aggregate_pass_through_at_once(tmp_path: Path) -> None:
    span = Span("GET /", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", T0, T0 + S)
    p = processor(tmp_path, Clock(T0))
    await p.start()
    out = await p.process(Batch(rows(("lat", 0.1, H, T0, None)).metrics, (span,)))
    assert out is not None
    assert out.events == (span,)
    assert len(out.metrics) == 0
    assert await p.process(rows(("lat", 0.2, H, T0, None))) is None
