"""The in-memory model: bounded, sorted per series, only the names widgets ask for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import Alert, Health, HealthStatus, Recommendation, Severity
from revopipe.plugins import PluginError, build_registry, hookimpl
from revopipe_plugins.dashboard.state import DashboardState
from revopipe_plugins.dashboard.tests.test_dashboard import QueueWidget


def batch(*rows: tuple[str, float, int, dict[str, str]]) -> Batch:
    b = MetricBatchBuilder()
    for name, value, ts, tags in rows:
        b.add(name, value, tags=tags, timestamp=ts)
    return Batch(b.build())


@given(st.lists(st.tuples(st.integers(0, 50), st.floats(-1e6, 1e6)), max_size=200))
def test_a_series_keeps_the_newest_points_in_time_order(points: list[tuple[int, float]]) -> None:
    state = DashboardState(["m"], points=10)
    for t, v in points:
        state.write(batch(("m", v, t * 10**9, {})))
    # reference: a point older than the newest is dropped, one at the same time replaces it
    ref: list[tuple[float, float]] = []
    for t, v in points:
        if ref and t < ref[-1][0]:
            continue
        if ref and t == ref[-1][0]:
            ref[-1] = (t, v)
        else:
            ref.append((t, v))
    ref = ref[-10:]
    got = state.series("m")
    if not ref:
        assert got == []
        return
    (s,) = got
    assert list(zip(s.times, s.values, strict=True)) == [(float(t), v) for t, v in ref]


def test_only_wanted_names_and_at_most_max_series_are_held() -> None:
    state = DashboardState(["cpu", "http.*.rate"], max_series=3)
    changed = state.write(
        batch(
            ("cpu", 1, 1, {}),
            ("disk", 1, 1, {}),
            ("http.a.rate", 1, 1, {"r": "1"}),
            ("http.b.rate", 1, 1, {"r": "2"}),
            ("http.c.rate", 1, 1, {"r": "3"}),
        )
    )
    assert changed and state.series_count == 3 and state.overflow == 1
    assert state.series("disk") == []
    assert [s.tag_dict for s in state.series("http.*.rate")] == [{"r": "1"}, {"r": "2"}]
    assert [s.name for s in state.series("http.a.rate", {"r": "1"})] == ["http.a.rate"]
    assert state.series("http.a.rate", {"r": "2"}) == []
    assert not state.write(batch(("disk", 2, 2, {})))


def test_events_keep_the_latest_per_subject_and_key() -> None:
    state = DashboardState([])
    state.write(
        Batch(
            events=(
                Health("service:api", HealthStatus.DEGRADED, "slow"),
                Health("service:api", HealthStatus.HEALTHY),
                Recommendation("t1", "a", "high", "low", key="k"),
                Recommendation("t2", "a", "high", "low", key="k"),
                Alert("r", "firing", Severity.WARNING, "s"),
            )
        )
    )
    assert state.health_events()["service:api"].status is HealthStatus.HEALTHY
    assert [r.title for r in state.events("recommendation")] == ["t2"]  # type: ignore[union-attr]
    assert len(state.events("alert")) == 1


class Twice:
    @hookimpl
    def revopipe_dashboard_widgets(self) -> list[type]:
        return [QueueWidget]


def test_two_plugins_with_one_widget_type_fail_naming_both() -> None:
    try:
        build_registry([("one", Twice()), ("two", Twice())])
    except PluginError as exc:
        assert "'queues'" in str(exc) and "'one'" in str(exc) and "'two'" in str(exc)
    else:
        raise AssertionError("expected a PluginError")
