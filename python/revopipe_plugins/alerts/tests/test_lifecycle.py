"""Alert lifecycle: a rule fed a synthetic series through the real parser and evaluator,
table-driven (fires exactly when `for` has elapsed, resolves when the condition clears,
pending that never fires, flapping with keep_firing_for, missing data), then repeat
notifications, acknowledgement and escalation."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe.events import make_tags
from revopipe_plugins.alerts.lifecycle import (
    Acknowledged,
    Notification,
    RuleLifecycle,
    State,
    Transition,
    fingerprint,
)
from revopipe_plugins.alerts.rule import RuleConfig
from revopipe_plugins.alerts.rules import Snapshot, evaluate

S = 1_000_000_000
M = 60 * S
HOST = make_tags({"host": "a"})
T0 = 1_700_000_000 * S


def make_rule(**kw: Any) -> RuleConfig:
    data: dict[str, Any] = {"name": "cpu", "expr": "last(cpu) > 0.8"}
    data.update(kw)
    return RuleConfig.model_validate(data)


def run(
    rule: RuleConfig, series: list[float | None], every: int = 15 * S
) -> tuple[list[str], list[tuple[int, str]]]:
    """Feed one sample per evaluation (None: no sample, the series is missing); return the
    alert's state after each step and (step index, reason) of every notification."""
    life = RuleLifecycle(rule)
    states: list[str] = []
    notes: list[tuple[int, str]] = []
    fp = fingerprint(rule.name, HOST)
    for i, sample in enumerate(series):
        snap = Snapshot({} if sample is None else {("cpu.last", HOST): sample})
        events = life.step(T0 + i * every, evaluate(rule.condition, snap))
        notes += [(i, e.reason) for e in events if isinstance(e, Notification)]
        alert = life.alerts.get(fp)
        states.append(State.INACTIVE.value if alert is None else alert.state.value)
    return states, notes


IN, P, F, R = "inactive", "pending", "firing", "resolved"
HI, LO, NA = 0.9, 0.5, None

# (id, rule options, samples every 15 s, states after each step, notifications)
CASES: list[tuple[str, dict[str, Any], list[float | None], list[str], list[tuple[int, str]]]] = [
    (
        "fires exactly when for elapsed, resolves when cleared",
        {"for": "1m"},
        [LO, HI, HI, HI, HI, HI, LO, LO],
        [IN, P, P, P, P, F, R, R],
        [(5, "firing"), (6, "resolved")],
    ),
    (
        "for = 0 fires at once",
        {},
        [HI, HI, LO],
        [F, F, R],
        [(0, "firing"), (2, "resolved")],
    ),
    (
        "pending that never fires",
        {"for": "1m"},
        [HI, HI, HI, HI, LO, HI, LO],
        [P, P, P, P, IN, P, IN],
        [],
    ),
    (
        "pending interrupted restarts its timer",
        {"for": "30s"},
        [HI, HI, LO, HI, HI, HI],
        [P, P, IN, P, P, F],
        [(5, "firing")],
    ),
    (
        "flapping without keep_firing_for re-fires",
        {},
        [HI, LO, HI, LO, HI],
        [F, R, F, R, F],
        [(0, "firing"), (1, "resolved"), (2, "firing"), (3, "resolved"), (4, "firing")],
    ),
    (
        "flapping held by keep_firing_for",
        {"keep_firing_for": "30s"},
        [HI, LO, HI, LO, LO, LO],
        [F, F, F, F, R, R],
        [(0, "firing"), (4, "resolved")],
    ),
    (
        "missing data counts as false while pending",
        {"for": "1m"},
        [HI, HI, NA, HI, HI],
        [P, P, IN, P, P],
        [],
    ),
    (
        "missing data resolves a firing alert",
        {"for": "15s"},
        [HI, HI, HI, NA, NA],
        [P, F, F, R, R],
        [(1, "firing"), (3, "resolved")],
    ),
    (
        "missing data held by keep_firing_for like a false condition",
        {"keep_firing_for": "45s"},
        [HI, NA, NA, HI, NA, NA, NA],
        [F, F, F, F, F, F, R],
        [(0, "firing"), (6, "resolved")],
    ),
    (
        "resolved then firing again is a new incident",
        {"for": "15s"},
        [HI, HI, LO, HI, HI],
        [P, F, R, P, F],
        [(1, "firing"), (2, "resolved"), (4, "firing")],
    ),
]


@pytest.mark.parametrize(
    ("options", "series", "states", "notes"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_lifecycle_table(
    options: dict[str, Any],
    series: list[float | None],
    states: list[str],
    notes: list[tuple[int, str]],
) -> None:
    got_states, got_notes = run(make_rule(**options), series)
    assert got_states == states
    assert got_notes == notes


def test_resolved_is_kept_then_dropped_to_inactive() -> None:
    life = RuleLifecycle(make_rule(), resolved_retention=60)
    life.step(T0, {HOST: 0.9})
    life.step(T0 + S, {})
    events = life.step(T0 + 61 * S, {})
    assert [(e.from_state, e.to_state) for e in events if isinstance(e, Transition)] == [
        (State.RESOLVED, State.INACTIVE)
    ]
    assert life.alerts == {}


def test_label_sets_are_independent() -> None:
    other = make_tags({"host": "b"})
    life = RuleLifecycle(make_rule(**{"for": "10s"}))
    life.step(T0, {HOST: 0.9})
    life.step(T0 + 5 * S, {HOST: 0.9, other: 0.95})
    events = life.step(T0 + 10 * S, {HOST: 0.9, other: 0.95})
    fired = [e.labels for e in events if isinstance(e, Notification)]
    assert fired == [{"host": "a", "alertname": "cpu", "severity": "warning"}]
    assert life.alerts[fingerprint("cpu", other)].state is State.PENDING


def test_transitions_carry_values_and_times() -> None:
    life = RuleLifecycle(make_rule(**{"for": "10s"}))
    events = life.step(T0, {HOST: 0.91}) + life.step(T0 + 10 * S, {HOST: 0.97})
    trans = [e for e in events if isinstance(e, Transition)]
    assert [(t.from_state, t.to_state, t.value, t.at) for t in trans] == [
        (State.INACTIVE, State.PENDING, 0.91, T0),
        (State.PENDING, State.FIRING, 0.97, T0 + 10 * S),
    ]


def test_notification_labels_and_annotations() -> None:
    rule = make_rule(
        labels={"team": "infra", "host": "overridden"},
        severity="critical",
        annotations={"summary": '{{ $labels.team }} cpu {{ $value | printf "%.1f" }}'},
    )
    life = RuleLifecycle(rule)
    (note,) = [e for e in life.step(T0, {HOST: 0.912}) if isinstance(e, Notification)]
    assert note.labels == {
        "host": "overridden",
        "team": "infra",
        "alertname": "cpu",
        "severity": "critical",
    }
    assert note.annotations == {"summary": "infra cpu 0.9"}
    assert note.starts_at == T0 and note.at == T0 and note.severity == "critical"


def test_fingerprint_is_stable_and_order_free() -> None:
    a = fingerprint("r", (("a", "1"), ("b", "2")))
    assert a == fingerprint("r", (("b", "2"), ("a", "1")))
    assert a != fingerprint("r2", (("a", "1"), ("b", "2")))
    assert a != fingerprint("r", (("a", "1"),))
    # fixed across runs and processes (no hash randomisation): history and dedup rely on it
    expected = hashlib.sha256(b'["cpu",[["host","a"]]]').hexdigest()[:16]
    assert fingerprint("cpu", HOST) == expected == "b87f2469023b21cc"


def notes_over(life: RuleLifecycle, minutes: int, acks: dict[int, str] | None = None) -> list[Any]:
    """Condition true every minute for `minutes`; ack at the given minutes."""
    out: list[Any] = []
    fp = fingerprint(life.rule.name, HOST)
    for m in range(minutes + 1):
        if acks and m in acks:
            out.append(life.ack(fp, acks[m], T0 + m * M))
        out += [
            (m, e.reason, e.tier, e.channel)
            for e in life.step(T0 + m * M, {HOST: 0.9})
            if isinstance(e, Notification)
        ]
    return out


def test_repeat_every_interval_while_firing() -> None:
    life = RuleLifecycle(make_rule(repeat_interval="10m"))
    assert notes_over(life, 35) == [
        (0, "firing", 0, None),
        (10, "repeat", 0, None),
        (20, "repeat", 0, None),
        (30, "repeat", 0, None),
    ]


def test_repeat_continues_during_keep_firing_for() -> None:
    life = RuleLifecycle(make_rule(repeat_interval="1m", keep_firing_for="5m"))
    life.step(T0, {HOST: 0.9})
    reasons = [e.reason for e in life.step(T0 + M, {}) if isinstance(e, Notification)]
    assert reasons == ["repeat"]


def test_escalation_once_per_tier() -> None:
    rule = make_rule(escalate_after="15m", escalate_to=["second", "manager"], repeat_interval="1h")
    assert notes_over(RuleLifecycle(rule), 59) == [
        (0, "firing", 0, None),
        (15, "escalate", 1, "second"),
        (30, "escalate", 2, "manager"),
    ]


def test_escalation_catches_up_after_a_gap_without_duplicates() -> None:
    rule = make_rule(escalate_after="15m", escalate_to=["second", "manager"], repeat_interval="1h")
    life = RuleLifecycle(rule)
    life.step(T0, {HOST: 0.9})
    late = [e for e in life.step(T0 + 40 * M, {HOST: 0.9}) if isinstance(e, Notification)]
    assert [(e.tier, e.channel) for e in late] == [(1, "second"), (2, "manager")]
    assert life.step(T0 + 41 * M, {HOST: 0.9}) == []


def test_escalation_without_channels_is_one_tier_left_to_routing() -> None:
    rule = make_rule(escalate_after="15m", repeat_interval="1h")
    assert notes_over(RuleLifecycle(rule), 50) == [
        (0, "firing", 0, None),
        (15, "escalate", 1, None),
    ]


def test_ack_stops_escalation_and_repeats() -> None:
    rule = make_rule(escalate_after="15m", escalate_to=["a", "b"], repeat_interval="10m")
    out = notes_over(RuleLifecycle(rule), 60, acks={20: "alice"})
    acks = [e for e in out if isinstance(e, Acknowledged)]
    assert [(a.by, a.at, a.state) for a in acks] == [("alice", T0 + 20 * M, State.FIRING)]
    assert [e for e in out if not isinstance(e, Acknowledged)] == [
        (0, "firing", 0, None),
        (10, "repeat", 0, None),
        (15, "escalate", 1, "a"),
    ]


def test_ack_does_not_stop_the_resolved_notification_and_next_incident_is_unacked() -> None:
    rule = make_rule(escalate_after="15m")
    life = RuleLifecycle(rule)
    fp = fingerprint("cpu", HOST)
    life.step(T0, {HOST: 0.9})
    life.ack(fp, "bob", T0 + M)
    assert [e.reason for e in life.step(T0 + 2 * M, {}) if isinstance(e, Notification)] == [
        "resolved"
    ]
    life.step(T0 + 3 * M, {HOST: 0.9})
    assert life.alerts[fp].acked_by is None
    reasons = [e.reason for e in life.step(T0 + 18 * M, {HOST: 0.9}) if isinstance(e, Notification)]
    assert reasons == ["escalate"]


def test_escalation_stops_on_resolve() -> None:
    life = RuleLifecycle(make_rule(escalate_after="15m", keep_firing_for="1m"))
    life.step(T0, {HOST: 0.9})
    life.step(T0 + 14 * M, {})
    assert life.alerts[fingerprint("cpu", HOST)].state is State.RESOLVED
    assert life.step(T0 + 16 * M, {}) == []


def test_ack_of_pending_is_kept_when_it_fires() -> None:
    life = RuleLifecycle(make_rule(**{"for": "1m"}, escalate_after="1m"))
    fp = fingerprint("cpu", HOST)
    life.step(T0, {HOST: 0.9})
    life.ack(fp, "carol", T0 + S)
    reasons = [
        e.reason
        for t in (1, 2, 3, 30)
        for e in life.step(T0 + t * M, {HOST: 0.9})
        if isinstance(e, Notification)
    ]
    assert reasons == ["firing"]


def test_ack_errors() -> None:
    life = RuleLifecycle(make_rule())
    with pytest.raises(LookupError, match="not active"):
        life.ack("nope", "x", T0)
    life.step(T0, {HOST: 0.9})
    life.step(T0 + S, {})
    with pytest.raises(LookupError, match="is resolved"):
        life.ack(fingerprint("cpu", HOST), "x", T0 + 2 * S)


@settings(max_examples=200, deadline=None)
@given(
    for_s=st.sampled_from([0, 10, 30]),
    keep_s=st.sampled_from([0, 20]),
    steps=st.lists(st.tuples(st.integers(1, 25), st.booleans()), min_size=1, max_size=40),
)
def test_lifecycle_properties(for_s: int, keep_s: int, steps: list[tuple[int, bool]]) -> None:
    """Against random evaluation times and outcomes: transitions chain, an alert fires at
    the first evaluation at which the condition has held continuously for `for`, and
    resolves at the first false evaluation `keep_firing_for` after it last held."""
    rule = make_rule(**{"for": f"{for_s}s", "keep_firing_for": f"{keep_s}s"})
    life = RuleLifecycle(rule, resolved_retention=3600)
    state = State.INACTIVE
    now = T0
    held_since: int | None = None  # start of the current run of true evaluations
    last_true: int | None = None
    prev_now: int | None = None
    for gap, holds in steps:
        now += gap * S
        events = life.step(now, {HOST: 0.9} if holds else {})
        for e in events:
            if isinstance(e, Transition):
                assert e.from_state is state
                state = e.to_state
        reasons = [e.reason for e in events if isinstance(e, Notification)]
        if holds:
            held_since = now if held_since is None else held_since
            last_true = now
        else:
            held_since = None
        if "firing" in reasons:
            assert held_since is not None and now - held_since >= for_s * S
            # not already due at the previous evaluation of this run
            assert prev_now is None or prev_now < held_since or prev_now - held_since < for_s * S
        if "resolved" in reasons:
            assert not holds and last_true is not None and now - last_true >= keep_s * S
        if state is State.FIRING and not holds:
            assert last_true is not None and now - last_true < keep_s * S
        if state is State.PENDING:
            assert holds and held_since is not None and now - held_since < for_s * S
        prev_now = now
