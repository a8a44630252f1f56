"""The app source reads revopipe.metrics instruments and revopipe.trace's finished spans;
with `aggregate` downstream, the service's percentiles come out exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from hdrh.histogram import HdrHistogram
from pydantic import ValidationError

from revopipe import Batch, _core, metrics, trace
from revopipe.events import HistogramSnapshot, MetricKind, Span
from revopipe.testing import collect, make
from revopipe_plugins.app.source import DRAIN_CHUNK, DROPPED_SPANS, AppSource

pytestmark = pytest.mark.anyio


async def test_reads_counters_gauges_and_histogram_snapshots(tmp_path: Path) -> None:
    _core.reset_instruments()
    trace.clear()
    hits = metrics.counter("app.requests", "{request}", {"route": "/a"})
    depth = metrics.gauge("app.queue.depth")
    lat = metrics.histogram("http.server.request.duration", "s", {"route": "/a"})
    hits.inc()
    hits.inc(2)
    depth.set(7)
    for v in (0.010, 0.020, 0.030):
        lat.record(v)

    # A window well past the first reading: on a loaded machine building 2500 spans can
    # outlast a short one and the reading would be cut short by the test, not the source.
    batches = await collect(make(AppSource, {"interval": "50ms"}, tmp_path), 1.0)
    first = batches[0]
    rows = {(m.name, m.tags): m for m in first.metrics}
    assert rows[("app.requests", (("route", "/a"),))].value == 3.0
    assert rows[("app.queue.depth", ())].value == 7.0
    snaps = [e for e in first.events if isinstance(e, HistogramSnapshot)]
    assert len(snaps) == 1
    s = snaps[0]
    assert (s.count, s.min, s.max) == (3, 0.010, 0.030)
    assert s.sum == pytest.approx(0.060)
    decoded = HdrHistogram.decode(s.hdr)
    assert decoded.get_total_count() == 3
    # the final reading on stop carries nothing new: histograms are deltas
    assert all(not b.events for b in batches[1:])
    _core.reset_instruments()


# ------------------------------------------------------------------------------ spans

DEFAULTS = {"sample_ratio": 1.0, "always_on_error": True, "max_buffered": 10_000}


@pytest.fixture
def fresh_tracing() -> Iterator[None]:
    trace.configure(**DEFAULTS)
    trace.clear()
    yield
    trace.configure(**DEFAULTS)
    trace.clear()


@pytest.mark.usefixtures("fresh_tracing")
async def test_finished_spans_arrive_as_span_events_with_the_dropped_count(
    tmp_path: Path,
) -> None:
    trace.configure(max_buffered=3)
    with trace.span("request", {"route": "/a"}, kind="server"):
        for i in range(4):
            with trace.span(f"step {i}"):
                pass
    # A window well past the first reading: on a loaded machine building 2500 spans can
    # outlast a short one and the reading would be cut short by the test, not the source.
    batches = await collect(make(AppSource, {"interval": "50ms"}, tmp_path), 1.0)
    spans = [e for b in batches for e in b.events if isinstance(e, Span)]
    # three steps fit the buffer; the fourth step and the request were dropped
    assert [s.name for s in spans] == ["step 0", "step 1", "step 2"]
    assert {s.parent_span_id for s in spans} == {spans[0].parent_span_id}
    dropped = [m.value for b in batches for m in b.metrics if m.name == DROPPED_SPANS]
    assert dropped and set(dropped) == {2.0}
    (row,) = [m for m in batches[0].metrics if m.name == DROPPED_SPANS]
    assert row.kind is MetricKind.COUNTER and row.unit == "{span}"


@pytest.mark.usefixtures("fresh_tracing")
async def test_spans_finished_before_stop_leave_with_the_last_reading(tmp_path: Path) -> None:
    src = make(AppSource, {"interval": "1h"}, tmp_path)
    batches = []

    async def emit(batch: Batch) -> None:
        batches.append(batch)

    await src.start()
    async with anyio.create_task_group() as tg:
        tg.start_soon(src.run, emit)
        await anyio.sleep(0.02)
        with trace.span("last words"):
            pass
        tg.cancel_scope.cancel()
    await src.stop()
    (batch,) = batches
    assert [e.name for e in batch.events if isinstance(e, Span)] == ["last words"]


@pytest.mark.usefixtures("fresh_tracing")
async def test_sampling_keys_configure_the_process_and_unset_keys_leave_it(
    tmp_path: Path,
) -> None:
    trace.configure(max_buffered=1234)
    src = make(AppSource, {"trace_sample_ratio": 0.0, "trace_errors_always": False}, tmp_path)
    await src.start()
    assert trace.get_config() == trace.TraceConfig(0.0, False, 1234)
    await src.stop()
    src = make(AppSource, {"trace_max_buffered": 50}, tmp_path)
    await src.start()
    assert trace.get_config() == trace.TraceConfig(0.0, False, 50)
    await src.stop()


@pytest.mark.usefixtures("fresh_tracing")
async def test_traces_off_leaves_the_spans_to_someone_else(tmp_path: Path) -> None:
    with trace.span("kept for another reader"):
        pass
    batches = await collect(make(AppSource, {"interval": "50ms", "traces": False}, tmp_path), 0.08)
    assert not any(isinstance(e, Span) for b in batches for e in b.events)
    assert not any(m.name == DROPPED_SPANS for b in batches for m in b.metrics)
    assert trace.buffered_spans() == 1


def test_bad_sampling_keys_are_rejected_with_the_key_named(tmp_path: Path) -> None:
    for cfg, key in [
        ({"trace_sample_ratio": 1.5}, "trace_sample_ratio"),
        ({"trace_sample_ratio": -1}, "trace_sample_ratio"),
        ({"trace_max_buffered": 0}, "trace_max_buffered"),
    ]:
        with pytest.raises(ValidationError, match=key):
            make(AppSource, cfg, tmp_path)


@pytest.mark.usefixtures("fresh_tracing")
async def test_a_full_buffer_is_taken_whole_in_one_reading(tmp_path: Path) -> None:
    n = DRAIN_CHUNK * 2 + 500
    for i in range(n):
        with trace.span("s", {"i": i}):
            pass
    # A window well past the first reading: on a loaded machine building 2500 spans can
    # outlast a short one and the reading would be cut short by the test, not the source.
    batches = await collect(make(AppSource, {"interval": "50ms"}, tmp_path), 1.0)
    first = [e for e in batches[0].events if isinstance(e, Span)]
    assert [int(dict(e.attributes)["i"]) for e in first] == list(range(n))
