"""`predict_linear`: the least-squares trend against `statistics.linear_regression`, the
window, missing history, and memory: samples are kept only for the series a
predict_linear selects, bounded per series whatever the window or the rate."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe.batch import MetricBatchBuilder
from revopipe.events import Tags, make_tags
from revopipe_plugins.alerts.rules import RING_SAMPLES, Snapshot, evaluate, parse

S = 1_000_000_000
DISK = "system.filesystem.utilization.last"
ROOT = make_tags({"system.filesystem.mountpoint": "/"})
DATA = make_tags({"system.filesystem.mountpoint": "/data"})


def push(s: Snapshot, ts_s: float, rows: dict[tuple[str, Tags], float]) -> None:
    b = MetricBatchBuilder(default_ts=round(ts_s * S))
    for (name, tags), v in rows.items():
        b.add(name, v, tags=tags)
    s.update(b.build())


def test_a_filling_disk_is_predicted_full() -> None:
    s = Snapshot()
    cond = parse('predict_linear(last(system.filesystem.utilization), "1h", "4h") >= 1')
    # "/" fills at 15 % an hour from 50 %; "/data" holds at 90 %
    assert evaluate(cond, s) == {}  # nothing yet: no series, no error
    for k in range(0, 61):
        t = k * 60.0
        push(s, t, {(DISK, ROOT): 0.5 + 0.15 * t / 3600, (DISK, DATA): 0.9})
        got = evaluate(cond, s)
        if k == 0:
            assert got == {}  # one sample is no trend
    assert set(got) == {ROOT}
    # at t = 1 h: 0.65 now, + 0.6 over 4 h
    assert got[ROOT] == pytest.approx(1.25)
    flat = evaluate(parse('predict_linear(last(system.filesystem.utilization), "1h", "4h")'), s)
    assert flat[DATA] == pytest.approx(0.9)


def test_only_the_window_counts() -> None:
    s = Snapshot()
    cond = parse('predict_linear(value(m), "10m", "1h")')
    evaluate(cond, s)
    # flat at 0 for an hour, then rising 1 per minute for ten minutes
    for k in range(0, 71):
        push(s, k * 60.0, {("m", ()): float(max(0, k - 60))})
    evaluate(cond, s)
    got = evaluate(cond, s)
    # the last ten minutes are 1..10 (and 0 at their start): slope 1/min, 10 now
    assert got[()] == pytest.approx(10 + 60)


def test_history_starts_at_the_first_evaluation() -> None:
    s = Snapshot()
    for k in range(10):
        push(s, k * 10.0, {("m", ()): float(k)})
    cond = parse('predict_linear(value(m), "1h", "100s")')
    # only the current value is known when the rule is first evaluated
    assert evaluate(cond, s) == {}
    push(s, 100.0, {("m", ()): 10.0})
    assert evaluate(cond, s) == {(): pytest.approx(20.0)}


def test_samples_only_for_selected_series_and_bounded() -> None:
    s = Snapshot()
    cond = parse('predict_linear(last(disk{mount="/"}), "1h", "1h")')
    root, other = make_tags({"mount": "/"}), make_tags({"mount": "/var"})
    push(s, 0, {("disk.last", root): 0.0, ("disk.last", other): 0.0, ("cpu.last", ()): 0.0})
    evaluate(cond, s)
    # a value every second for three hours: far more than the ring holds
    for k in range(1, 3 * 3600):
        push(s, k, {("disk.last", root): k / 3600, ("disk.last", other): 0.5})
    rings = s._families["disk.last"].rings
    assert set(rings) == {s._ids[root]}  # not /var, not cpu
    ring = rings[s._ids[root]]
    assert len(ring.stamps) <= RING_SAMPLES + 2
    assert (ring.stamps[-1] - ring.stamps[0]) / S == pytest.approx(3600, abs=30)
    assert evaluate(cond, s)[root] == pytest.approx((3 * 3600 - 1) / 3600 + 1, rel=1e-9)
    # a series appearing later under the selector gets samples too; expiry drops them
    new = make_tags({"mount": "/", "dev": "sdb"})
    push(s, 3 * 3600, {("disk.last", new): 0.1, ("disk.last", root): 3.0})
    push(s, 3 * 3600 + 60, {("disk.last", new): 0.2})
    assert evaluate(cond, s)[new] == pytest.approx(0.2 + 60 * 0.1)
    s.expire((3 * 3600 + 1) * S)
    assert set(s._families["disk.last"].rings) == {s._ids[new]}


def test_two_windows_on_one_selector() -> None:
    s = Snapshot()
    short = parse('predict_linear(value(m), "2m", "0s")')
    long = parse('predict_linear(value(m), "1h", "0s")')
    evaluate(short, s)
    push(s, 0, {("m", ()): 0.0})
    evaluate(short, s)
    evaluate(long, s)  # widens the series' ring
    for k in range(1, 31):
        push(s, k * 60.0, {("m", ()): float(k % 2)})
    # the last two minutes are 0, 1, 0: a flat line through their mean
    assert evaluate(short, s)[()] == pytest.approx(1 / 3)
    assert evaluate(long, s)[()] == pytest.approx(
        _ref([(k * 60.0, float(k % 2)) for k in range(31)], 0.0)
    )


def _ref(points: list[tuple[float, float]], horizon: float) -> float:
    xs = [t for t, _ in points]
    ys = [v for _, v in points]
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept + slope * (xs[-1] + horizon)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        # steps past the ring's spacing (1000 h / 256), so no sample is thinned away
        st.tuples(st.integers(14_100, 50_000), st.floats(-1e3, 1e3, allow_nan=False)),
        min_size=2,
        max_size=60,
    ),
    st.integers(0, 36000),
)
def test_matches_least_squares(steps: list[tuple[int, float]], horizon: int) -> None:
    s = Snapshot()
    cond = parse(f'predict_linear(value(m), "1000h", "{horizon}s")')
    evaluate(cond, s)
    t = 0.0
    points = []
    for dt, v in steps:
        t += dt
        points.append((t, v))
        push(s, t, {("m", ()): v})
    got = evaluate(cond, s)
    want = _ref(points, horizon)
    if math.isfinite(want):
        scale = max(1.0, *(abs(v) for _, v in points)) * (1 + horizon / max(1.0, t))
        assert got[()] == pytest.approx(want, abs=1e-6 * scale, rel=1e-6)
