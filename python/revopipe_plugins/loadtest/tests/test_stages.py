from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revopipe_plugins.loadtest.stages import (
    PRESETS,
    Schedule,
    Stage,
    custom,
    drift,
    endurance,
    expand_volume,
    load,
    preset,
    smoke,
    spike,
    stress,
    target_at,
    volume,
)

targets = st.floats(min_value=0.5, max_value=50_000, allow_nan=False)
durations = st.floats(min_value=1.0, max_value=7 * 86_400, allow_nan=False)


def samples(schedule: Schedule, n: int = 400) -> list[tuple[float, float]]:
    d = schedule.duration
    return [(d * i / n, schedule.target_at(d * i / n)) for i in range(n + 1)]


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def rising(values: list[float]) -> bool:
    """Non-decreasing up to float rounding at stage boundaries."""
    return all(b >= a - 1e-9 * max(1.0, abs(a)) for a, b in itertools.pairwise(values))


def stage_ends(schedule: Schedule) -> list[float]:
    ends, t = [], 0.0
    for s in schedule.stages:
        t += s.duration
        ends.append(t)
    return ends


def test_target_at_interpolates_linearly_between_stages() -> None:
    stages = [Stage(10, 100), Stage(10, 100), Stage(5, 0)]
    assert target_at(stages, 0.0, -1) == 0
    assert target_at(stages, 0.0, 0) == 0
    assert target_at(stages, 0.0, 5) == 50
    assert target_at(stages, 0.0, 15) == 100
    assert target_at(stages, 0.0, 22.5) == 50
    assert target_at(stages, 0.0, 100) == 0
    schedule = Schedule(20.0, (Stage(10, 40),))
    assert target_at(schedule, 5) == 30
    assert schedule.as_core() == [(10, 40)]


@given(target=targets, duration=durations)
def test_every_preset_lasts_exactly_the_duration_with_positive_stages(
    target: float, duration: float
) -> None:
    for name, make in PRESETS.items():
        schedule = make(target, duration)
        assert math.isclose(schedule.duration, duration, rel_tol=1e-9), name
        assert all(s.duration > 0 and s.target >= 0 for s in schedule.stages), name
        assert schedule.kind == name


@given(target=targets, duration=durations)
def test_load_ramps_up_holds_and_ramps_down(target: float, duration: float) -> None:
    for schedule in (load(target, duration), volume(target, duration)):
        up = min(max(0.1 * duration, 5.0), duration / 2)
        down = min(0.05 * duration, duration - up)
        assert schedule.start_target == 0 and schedule.peak == target
        points = samples(schedule)
        ups = [v for t, v in points if t <= up]
        holds = [v for t, v in points if up <= t <= duration - down]
        downs = [v for t, v in points if t >= duration - down]
        assert rising(ups)
        assert all(close(v, target) for v in holds)
        assert rising([-v for v in downs])
        assert close(schedule.target_at(duration), 0.0 if down > 0 else target)
    assert volume(target, duration).volume and not load(target, duration).volume


@given(target=targets, duration=durations)
def test_stress_steps_up_to_150_percent(target: float, duration: float) -> None:
    schedule = stress(target, duration)
    assert close(schedule.peak, 1.5 * target)
    down = 0.05 * duration
    assert rising([v for t, v in samples(schedule) if t <= duration - down])
    # Each step's level is held at the end of its step.
    ends = stage_ends(schedule)
    for k, level in enumerate((0.25, 0.5, 0.75, 1.0, 1.25, 1.5)):
        assert close(schedule.target_at(ends[2 * k + 1] - 1e-9 * duration), level * target)
    assert close(schedule.target_at(duration), 0.0)


@given(target=targets, duration=durations)
def test_spike_jumps_up_and_back_to_the_base(target: float, duration: float) -> None:
    schedule = spike(target, duration)
    base = 0.1 * target
    jump = min(1.0, 0.02 * duration)
    assert schedule.model_hint == "open"
    assert schedule.start_target == base and close(schedule.peak, target)
    for t, v in samples(schedule):
        if t <= 0.3 * duration or t >= 0.5 * duration + 2 * jump:
            assert close(v, base), t
        elif 0.3 * duration + jump <= t <= 0.5 * duration + jump:
            assert close(v, target), t
        else:
            assert base - 1e-9 <= v <= target + 1e-9


@given(target=targets, duration=durations)
def test_smoke_and_endurance(target: float, duration: float) -> None:
    s = smoke(target, duration)
    assert s.stages == (Stage(duration, min(target, 2.0)),)
    assert s.start_target == min(target, 2.0)
    e = endurance(target, duration)
    assert e.peak == target and e.start_target == 0
    # Holds at the target for most of the run.
    held = sum(1 for _, v in samples(e) if close(v, target))
    assert held / 401 >= 0.45


def test_preset_by_name_and_bad_input() -> None:
    assert preset("load", 10).duration == 300
    assert preset("spike", 10, 60).duration == 60
    with pytest.raises(ValueError, match=r"unknown test type 'soak'.*smoke, load"):
        preset("soak", 10)
    with pytest.raises(ValueError, match="target must be a positive number"):
        load(0, 60)
    with pytest.raises(ValueError, match="duration must be positive"):
        stress(10, math.nan)


def test_custom_from_strings_tables_and_pairs() -> None:
    schedule = custom(["30s:50", {"duration": "1m", "target": 50}, (10, 0)], start_target=5)
    assert schedule.stages == (Stage(30, 50), Stage(60, 50), Stage(10, 0))
    assert schedule.start_target == 5
    assert schedule.target_at(15) == 27.5


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([], "at least one stage"),
        (["30s"], r"stages\[0\].*'DURATION:TARGET'"),
        (["30:50"], r"stages\[0\]: duration: expected"),
        (["10s:50", "0s:10"], r"stages\[1\]: duration must be > 0"),
        (["10s:-1"], "target must be a number >= 0"),
        (["10s:many"], "target must be a number"),
        ([{"duration": "10s"}], "exactly the keys 'duration' and 'target'"),
        ([{"duration": "10s", "target": 1, "users": 3}], "exactly the keys"),
        ([42], "expected '30s:50' or a table"),
    ],
)
def test_custom_errors_name_the_stage_and_the_fix(specs: list[object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        custom(specs)  # type: ignore[arg-type]


def test_expand_volume_spreads_urls_and_weights() -> None:
    requests = [
        ("GET", "http://h/a?x=1#frag", [("accept", "*/*")], None, 3.0),
        ("POST", "http://h/b", [], None, 1.0),
        ("PUT", "http://h/c", [], b"{}", 1.0),
    ]
    out = expand_volume(requests, distinct=4, body_size=1024)
    assert len(out) == 12
    assert out[0][1] == "http://h/a?x=1&revopipe_volume=0#frag"
    assert out[4][1] == "http://h/b?revopipe_volume=0"
    assert len({r[1] for r in out}) == 12
    assert math.isclose(sum(r[4] for r in out), 5.0)
    assert out[0][3] is None and out[4][3] == b"x" * 1024 and out[8][3] == b"{}"
    with pytest.raises(ValueError, match="distinct URLs must be >= 1"):
        expand_volume(requests, distinct=0)


def test_drift_compares_first_and_last_tenth() -> None:
    snaps = [{"requests": 10, "latency": {"p99": 0.010 + 0.001 * i}} for i in range(100)]
    snaps.insert(50, {"requests": 0, "latency": {"p99": 0.0}})
    d = drift(snaps)
    assert d is not None
    assert math.isclose(d.first, 0.0145) and math.isclose(d.last, 0.1045)
    assert math.isclose(d.relative, 0.09 / 0.0145)
    mem = drift([{"memory_rss": 100.0}, {"memory_rss": 100.0}], "memory_rss")
    assert mem is not None and mem.relative == 0.0
    assert drift([], "latency.p99") is None
