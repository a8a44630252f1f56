"""`mode = "partial"` feeding a window-mode aggregate equals one aggregate over all the raw
values; acks are held until the window that holds the data is emitted; `watermark =
"data"` lets an idle aggregator accept old windows."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revopipe import Batch, MetricKind
from revopipe.acks import Ack
from revopipe.batch import MetricBatchBuilder
from revopipe.events import HistogramSnapshot, Span
from revopipe.testing import make
from revopipe_plugins.aggregate.processor import AggregateProcessor

S = 1_000_000_000
T0 = 1_800_000_000 * S
H, C, G = MetricKind.HISTOGRAM, MetricKind.COUNTER, MetricKind.GAUGE
pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def agg(tmp_path: Path, clock: Clock, **config: object) -> AggregateProcessor:
    p = make(
        AggregateProcessor,
        {"inputs": ["x"], "window": "10s", "grace": "0s", **config},
        tmp_path,
        name="agg",
    )
    p.clock = clock
    return p


def hist_batch(values: list[tuple[float, int, str]], origin: str | None = None) -> Batch:
    b = MetricBatchBuilder()
    for v, ts, route in values:
        b.add("lat", v, H, "s", {"route": route}, ts)
    return Batch(b.build(), origin=origin)


def stats(out: list[Batch]) -> dict[tuple[str, Any, int], float]:
    res = {}
    for batch in out:
        m = batch.metrics
        for n, t, v, ts in zip(m.names, m.tags, m.values, m.timestamps, strict=True):
            key = (n, t, ts)
            assert key not in res, f"two rows for {key}"
            res[key] = v
    return res


async def started(p: AggregateProcessor) -> AggregateProcessor:
    await p.start()
    return p


observations = st.lists(
    st.tuples(
        st.floats(min_value=0.0001, max_value=100.0),
        st.integers(min_value=0, max_value=35 * S),
        st.sampled_from(["a", "b"]),
    ),
    min_size=1,
    max_size=300,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=observations, cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6))
async def test_partials_merged_equal_one_aggregate_over_the_raw_values(
    tmp_path: Path, values: list[tuple[float, int, str]], cuts: list[int]
) -> None:
    vals = [(v, T0 + dt, r) for v, dt, r in values]
    clock = Clock(T0 + 100 * S)
    reference = await started(agg(tmp_path, clock))
    await reference.process(hist_batch(vals))
    expected = stats([x for x in [await reference.flush()] if x])

    tier1 = await started(agg(tmp_path, clock, mode="partial"))
    tier2 = await started(agg(tmp_path, clock))
    bounds = sorted({0, len(vals), *(c % (len(vals) + 1) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        for part in await tier1.process(hist_batch(vals[lo:hi], origin=f"b{lo}")) or []:
            assert not len(part.metrics) and all(
                isinstance(e, HistogramSnapshot) for e in part.events
            )
            await tier2.process(part)
    got = stats([x for x in [await tier2.flush()] if x])
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        if key[0].endswith((".sum", ".mean")):  # float addition in another order
            assert got[key] == pytest.approx(want, rel=1e-12), key
        else:  # counts, extremes and every percentile: exact
            assert got[key] == want, key


async def test_partial_output_is_one_batch_per_window_and_repeatable(tmp_path: Path) -> None:
    clock = Clock(T0)
    p = await started(agg(tmp_path, clock, mode="partial"))
    b = MetricBatchBuilder()
    b.add("lat", 0.5, H, "s", {}, T0 + 1 * S)
    b.add("lat", 0.7, H, "s", {}, T0 + 12 * S)
    b.add("hits", 10, C, "1", {}, T0 + 2 * S)
    b.add("temp", 20, G, "Cel", {}, T0 + 13 * S)
    span = Span("op", "a" * 32, "b" * 16, T0, T0 + 1)
    batch = Batch(b.build(), (span,), origin="agent-1-7")
    first = await p.process(batch)
    again = await p.process(batch)
    # the same input gives the same output, origin ids included
    assert [(x.metrics, x.events, x.origin) for x in first] == [
        (x.metrics, x.events, x.origin) for x in again
    ]
    assert [x.origin for x in first] == [f"agent-1-7/{T0}", f"agent-1-7/{T0 + 10 * S}"]
    w0, w1 = first
    assert list(w0.metrics.names) == ["hits"] and list(w1.metrics.names) == ["temp"]
    assert [type(e).__name__ for e in w0.events] == ["HistogramSnapshot", "Span"]
    assert [e.count for e in w1.events if isinstance(e, HistogramSnapshot)] == [1]


async def test_window_mode_holds_acks_until_the_window_is_emitted(tmp_path: Path) -> None:
    clock = Clock(T0 + 1 * S)
    p = await started(agg(tmp_path, clock))
    verdicts: list[tuple[str, bool]] = []
    early = hist_batch([(0.1, T0 + 1 * S, "a")]).with_acks(
        (Ack(lambda ok: verdicts.append(("early", ok))),)
    )
    late = hist_batch([(0.2, T0 + 11 * S, "a")]).with_acks(
        (Ack(lambda ok: verdicts.append(("late", ok))),)
    )
    assert await p.process(early) is None
    assert await p.process(late) is None
    clock.now = T0 + 10 * S  # closes the first window only
    out = await p.tick()
    assert out is not None and len(out.acks) == 1
    out.acks[0].release()  # the sink wrote it
    assert verdicts == [("early", True)]
    clock.now = T0 + 20 * S
    out = await p.tick()
    assert out is not None
    for a in out.acks:
        a.release()
    assert verdicts == [("early", True), ("late", True)]


async def test_data_watermark_lets_an_idle_standby_accept_old_windows(tmp_path: Path) -> None:
    clock = Clock(T0 + 100 * S)
    for watermark, kept in (("clock", False), ("data", True)):
        p = await started(agg(tmp_path, clock, watermark=watermark))
        assert await p.tick() is None  # idle for a while
        await p.process(hist_batch([(0.3, T0 + 1 * S, "a")]))  # a redelivered old window
        out = await p.tick()
        rows = stats([out]) if out else {}
        assert ((("lat.count", (("route", "a"),), T0 + 10 * S)) in rows) is kept
