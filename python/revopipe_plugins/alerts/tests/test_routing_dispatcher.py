"""The dispatcher with injected time: grouping (group_wait, group_interval), dedupe,
resolved, inhibition, silences, repeat, escalation, acknowledgement, restart seeding and
dedup/group key stability."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from revopipe.events import make_tags
from revopipe_plugins.alerts.lifecycle import Notification as AlertEvent
from revopipe_plugins.alerts.lifecycle import RuleLifecycle
from revopipe_plugins.alerts.notify import Notification
from revopipe_plugins.alerts.routing import (
    DEFAULT_INHIBIT_RULES,
    Dispatcher,
    Outgoing,
    Route,
    SilenceStore,
    dedup_key,
    group_key,
    group_labels,
    restored_events,
)
from revopipe_plugins.alerts.rule import RuleConfig

S = 1_000_000_000
M = 60 * S
T0 = 1_700_000_000 * S

ROUTE = Route.model_validate(
    {"channel": "team", "group_by": ["alertname"], "group_wait": "2s", "group_interval": "1m"}
)


def ev(
    reason: str = "firing",
    host: str = "a",
    *,
    at: int,
    name: str = "high_cpu_usage",
    severity: str = "warning",
    starts: int | None = None,
    tier: int = 0,
    channel: str | None = None,
    **labels: str,
) -> AlertEvent:
    all_labels = {"host": host, **labels, "alertname": name, "severity": severity}
    return AlertEvent(
        reason=reason,  # type: ignore[arg-type]
        rule=name,
        fingerprint=f"{name}@{host}",
        labels=all_labels,
        annotations={"summary": f"{name} on {host}"},
        severity=severity,
        value=1.0,
        starts_at=at if starts is None else starts,
        at=at,
        tier=tier,
        channel=channel,
    )


def summary(out: list[Outgoing]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(channel, group_key, [(fingerprint, status)]) per message: easy to compare."""
    return [
        (o.channel, o.group_key, [(n.fingerprint, n.status) for n in o.notifications]) for o in out
    ]


def keys(out: list[Outgoing]) -> list[str]:
    return [n.dedup_key for o in out for n in o.notifications]


# --- grouping ------------------------------------------------------------------------------


def test_group_wait_then_group_interval() -> None:
    d = Dispatcher(ROUTE, ())
    d.add(ev(host="a", at=T0))
    d.add(ev(host="b", at=T0 + S))  # same group (alertname), inside group_wait
    assert d.next_flush() == T0 + 2 * S
    assert d.flush(T0 + 2 * S - 1) == []
    first = d.flush(T0 + 2 * S)
    assert summary(first) == [
        (
            "team",
            "route:alertname=high_cpu_usage",
            [("high_cpu_usage@a", "firing"), ("high_cpu_usage@b", "firing")],
        )
    ]
    assert d.next_flush() is None  # nothing changed: nothing to do
    assert d.flush(T0 + 10 * M) == []
    # a third alert after the first flush goes out at the next group_interval boundary
    d.add(ev(host="c", at=T0 + 10 * S))
    assert d.next_flush() == T0 + 62 * S
    assert d.flush(T0 + 61 * S) == []
    (msg,) = d.flush(T0 + 62 * S)
    assert [n.fingerprint for n in msg.notifications] == [
        "high_cpu_usage@a",
        "high_cpu_usage@b",
        "high_cpu_usage@c",
    ]  # Alertmanager sends the whole group, oldest first
    # boundaries stay on the grid of the last flush: last + k * interval
    d.add(ev(host="d", at=T0 + 62 * S + 61 * S))
    assert d.next_flush() == T0 + 62 * S + 2 * M
    assert d.stats.messages == 2 and d.stats.sent == 5


def test_other_group_labels_make_other_groups() -> None:
    d = Dispatcher(ROUTE, ())
    d.add(ev(host="a", at=T0))
    d.add(ev(host="a", name="high_memory_usage", at=T0 + S))
    out = d.flush(T0 + 3 * S)
    assert sorted(o.group_key for o in out) == [
        "route:alertname=high_cpu_usage",
        "route:alertname=high_memory_usage",
    ]
    assert d.group_count == 2


def test_dedupe_by_fingerprint_latest_wins() -> None:
    d = Dispatcher(ROUTE, ())
    d.add(ev(at=T0))
    d.add(replace(ev(at=T0), value=2.0, annotations={"summary": "newer"}))
    (msg,) = d.flush(T0 + 2 * S)
    (n,) = msg.notifications
    assert n.annotations["summary"] == "newer"
    d.add(ev(at=T0))  # the same firing again later: nothing new to tell
    assert d.next_flush() is None


def test_group_by_every_label_and_add_now() -> None:
    route = Route.model_validate({"channel": "c", "group_by": ["..."], "group_wait": "0s"})
    d = Dispatcher(route, ())
    d.add(ev(host="a", at=T0), now=T0 + 5 * S)  # `now` overrides the event's time
    d.add(ev(host="b", at=T0), now=T0 + 5 * S)
    out = d.flush(T0 + 5 * S)
    assert len(out) == 2
    assert out[0].group_key == ("route:alertname=high_cpu_usage,host=a,severity=warning")


# --- resolved ------------------------------------------------------------------------------


@pytest.mark.parametrize("send_resolved", [True, False])
def test_resolved(send_resolved: bool) -> None:
    d = Dispatcher(ROUTE, (), send_resolved={"team": send_resolved})
    d.add(ev(host="a", at=T0))
    d.add(ev(host="b", at=T0))
    d.flush(T0 + 2 * S)
    d.add(ev("resolved", host="a", at=T0 + 30 * S, starts=T0))
    if send_resolved:
        assert d.next_flush() == T0 + 62 * S
        (msg,) = d.flush(T0 + 62 * S)
        assert [(n.fingerprint, n.status) for n in msg.notifications] == [
            ("high_cpu_usage@a", "resolved"),
            ("high_cpu_usage@b", "firing"),
        ]
        resolved = msg.notifications[0]
        assert (resolved.starts_at_ns, resolved.ends_at_ns) == (T0, T0 + 30 * S)
    else:
        assert d.next_flush() is None
        assert d.flush(T0 + 62 * S) == []
    # the last alert resolves: the group is dropped once that is sent
    d.add(ev("resolved", host="b", at=T0 + 70 * S, starts=T0))
    out = d.flush(T0 + 10 * M)
    assert summary(out) == (
        [("team", "route:alertname=high_cpu_usage", [("high_cpu_usage@b", "resolved")])]
        if send_resolved
        else []
    )
    assert d.group_count == 0 and d.next_flush() is None


def test_send_resolved_callable_and_resolved_inside_group_wait() -> None:
    d = Dispatcher(ROUTE, (), send_resolved=lambda channel: channel == "team")
    d.add(ev(at=T0))
    d.add(ev("resolved", at=T0 + S, starts=T0))  # never told it fired: nothing to say
    assert d.flush(T0 + 2 * S) == []
    assert d.group_count == 0


def test_refiring_is_a_new_incident() -> None:
    d = Dispatcher(ROUTE, ())
    d.add(ev(at=T0))
    d.flush(T0 + 2 * S)
    d.add(ev("resolved", at=T0 + 10 * S, starts=T0))
    d.add(ev(at=T0 + 20 * S))  # fires again before the flush: the new incident wins
    (msg,) = d.flush(T0 + 62 * S)
    assert [n.dedup_key for n in msg.notifications] == [f"high_cpu_usage@a:{T0 + 20 * S}:firing"]


# --- inhibition ----------------------------------------------------------------------------


def cpu(
    severity: str, host: str, at: int, reason: str = "firing", starts: int | None = None
) -> AlertEvent:
    name = "critical_cpu_usage" if severity == "critical" else "high_cpu_usage"
    return ev(reason, host, at=at, name=name, severity=severity, starts=starts, alertgroup="cpu")


def test_inhibition_critical_mutes_warning_until_it_resolves() -> None:
    route = Route.model_validate({"channel": "team", "group_by": ["host"]})
    d = Dispatcher(route)  # the default inhibit rule
    d.add(cpu("warning", "a", T0))
    d.add(cpu("critical", "a", T0))
    d.add(cpu("warning", "b", T0))  # another host: a critical on `a` does not mute it
    out = d.flush(T0 + 2 * S)
    assert summary(out) == [
        ("team", "route:host=a", [("critical_cpu_usage@a", "firing")]),
        ("team", "route:host=b", [("high_cpu_usage@b", "firing")]),
    ]
    muted = d.muted_alerts["high_cpu_usage@a"]
    assert muted.inhibited_by == ("critical_cpu_usage@a",) and muted.reason == "inhibited"
    assert d.stats.inhibited == 1
    warn_labels = cpu("warning", "a", T0).labels
    assert d.muted(warn_labels, T0 + 3 * S, "high_cpu_usage@a") == [
        "inhibited_by:critical_cpu_usage@a"
    ]
    # still inhibited at the re-check: nothing new, nothing sent
    assert d.next_flush() == T0 + 62 * S
    assert d.flush(T0 + 62 * S) == []
    assert d.stats.inhibited == 1  # counted once
    # the critical resolves: it goes out resolved, and the warning with it
    d.add(cpu("critical", "a", T0 + 90 * S, "resolved", starts=T0))
    (msg,) = d.flush(T0 + 122 * S)
    assert [(n.fingerprint, n.status) for n in msg.notifications] == [
        ("critical_cpu_usage@a", "resolved"),
        ("high_cpu_usage@a", "firing"),
    ]
    assert "high_cpu_usage@a" not in d.muted_alerts
    assert d.muted(warn_labels, T0 + 123 * S, "high_cpu_usage@a") == []


def test_inhibition_needs_equal_labels() -> None:
    d = Dispatcher(ROUTE)
    d.add(cpu("critical", "a", T0))
    d.add(
        replace(
            cpu("warning", "a", T0), labels={**cpu("warning", "a", T0).labels, "alertgroup": "mem"}
        )
    )
    out = d.flush(T0 + 2 * S)
    assert sorted(n.fingerprint for o in out for n in o.notifications) == [
        "critical_cpu_usage@a",
        "high_cpu_usage@a",
    ]
    assert d.muted_alerts == {}
    assert DEFAULT_INHIBIT_RULES  # the constant the processor can default to


# --- silences ------------------------------------------------------------------------------


def test_silence_mutes_while_active_then_sends(tmp_path: Path) -> None:
    with SilenceStore(tmp_path / "silences.db") as store:
        sil = store.add(
            ['host="a"'], starts_at=T0, ends_at=T0 + 100 * S, created_by="ana", comment="deploy"
        )
        d = Dispatcher(ROUTE, (), silences=store)
        d.add(ev(host="a", at=T0))
        assert d.flush(T0 + 2 * S) == []
        assert d.muted_alerts["high_cpu_usage@a"].silenced_by == (sil.id,)
        assert d.stats.silenced == 1
        assert d.muted(ev(at=T0).labels, T0 + 3 * S) == [f"silence:{sil.id}"]
        assert d.next_flush() == T0 + 62 * S  # re-checked every group_interval
        assert d.flush(T0 + 62 * S) == []
        (msg,) = d.flush(T0 + 122 * S)  # the silence ended at T0 + 100 s
        assert [n.fingerprint for n in msg.notifications] == ["high_cpu_usage@a"]
        assert d.muted_alerts == {} and d.next_flush() is None
        # expired early from the CLI: the next re-check sends
        store.add(['host="b"'], starts_at=T0, ends_at=T0 + 1000 * M, created_by="x", id="s2")
        d.add(ev(host="b", at=T0 + 130 * S))
        assert d.flush(T0 + 182 * S) == []
        store.expire("s2", T0 + 200 * S)
        assert [n.fingerprint for n in d.flush(T0 + 242 * S)[0].notifications] == [
            "high_cpu_usage@a",
            "high_cpu_usage@b",
        ]


def test_silenced_alert_that_resolves_is_never_sent(tmp_path: Path) -> None:
    with SilenceStore(tmp_path / "silences.db") as store:
        store.add(['host="a"'], starts_at=T0, ends_at=T0 + M * 100, created_by="ana")
        d = Dispatcher(ROUTE, (), silences=store)
        d.add(ev(host="a", at=T0))
        assert d.flush(T0 + 2 * S) == []
        d.add(ev("resolved", host="a", at=T0 + 10 * S, starts=T0))
        assert d.flush(T0 + 10 * M) == [] and d.group_count == 0


# --- repeat --------------------------------------------------------------------------------


def test_repeat_resends_after_the_repeat_only() -> None:
    d = Dispatcher(ROUTE, ())
    d.add(ev(host="a", at=T0))
    d.add(ev(host="b", at=T0))
    assert keys(d.flush(T0 + 2 * S)) == [
        f"high_cpu_usage@a:{T0}:firing",
        f"high_cpu_usage@b:{T0}:firing",
    ]
    assert d.flush(T0 + 14 * M) == []  # no repeat yet: nothing is re-sent
    rep = T0 + 15 * M
    d.add(ev("repeat", host="a", at=rep, starts=T0))
    assert d.next_flush() == T0 + 2 * S + 15 * M  # the group_interval grid
    assert keys(d.flush(T0 + 16 * M)) == [
        f"high_cpu_usage@a:{T0}:firing:r{rep}",
        f"high_cpu_usage@b:{T0}:firing",
    ]
    assert d.flush(T0 + 30 * M) == []


# --- escalation ----------------------------------------------------------------------------


def test_escalation_to_a_named_channel_goes_at_once() -> None:
    d = Dispatcher(ROUTE, ())
    d.add(ev(at=T0))
    d.flush(T0 + 2 * S)
    esc = T0 + 15 * M
    d.add(ev("escalate", at=esc, starts=T0, tier=1, channel="manager"))
    assert d.next_flush() == esc  # no group_wait
    (msg,) = d.flush(esc)
    assert (msg.channel, msg.group_key) == ("manager", "escalation:alertname=high_cpu_usage")
    (n,) = msg.notifications
    assert n.dedup_key == f"high_cpu_usage@a:{T0}:firing:e1"
    assert n.labels["escalation_tier"] == "1"
    # the resolve reaches the manager at once and the team at its boundary
    d.add(ev("resolved", at=esc + S, starts=T0))
    assert summary(d.flush(esc + S)) == [
        ("manager", "escalation:alertname=high_cpu_usage", [("high_cpu_usage@a", "resolved")])
    ]
    assert summary(d.flush(T0 + 16 * M)) == [
        ("team", "route:alertname=high_cpu_usage", [("high_cpu_usage@a", "resolved")])
    ]
    assert d.group_count == 0


def test_escalation_without_channel_is_routed_by_tier_label() -> None:
    route = Route.model_validate(
        {
            "channel": "team",
            "routes": [{"matchers": ['escalation_tier="1"'], "channel": "oncall"}],
        }
    )
    d = Dispatcher(route, ())
    d.add(ev(at=T0))
    assert summary(d.flush(T0 + 2 * S))[0][0] == "team"
    esc = T0 + 15 * M
    d.add(ev("escalate", at=esc, starts=T0, tier=1))
    assert d.next_flush() == esc + 2 * S  # a new group: group_wait
    (msg,) = d.flush(esc + 2 * S)
    assert (msg.channel, msg.group_key) == (
        "oncall",
        "route.routes[0]:alertname=high_cpu_usage",
    )
    (n,) = msg.notifications
    assert n.labels["escalation_tier"] == "1"
    assert n.dedup_key == f"high_cpu_usage@a:{T0}:firing:e1"
    assert d.groups_of("high_cpu_usage@a") == [
        ("oncall", "route.routes[0]:alertname=high_cpu_usage"),
        ("team", "route:alertname=high_cpu_usage"),
    ]


# --- acknowledgement -----------------------------------------------------------------------


def test_ack_goes_at_once_to_every_channel_that_was_told() -> None:
    route = Route.model_validate(
        {
            "channel": "team",
            "routes": [
                {"matchers": ['severity="warning"'], "channel": "pager", "continue": True},
                {"matchers": ['host="a"'], "channel": "slack"},
            ],
        }
    )
    d = Dispatcher(route, ())
    d.add(ev(at=T0))
    d.add(ev(host="z", name="other", at=T0 + 10 * S))
    assert {o.channel for o in d.flush(T0 + 2 * S)} == {"pager", "slack"}
    d.acknowledged("other@z", "ana", T0 + 3 * S)  # still in group_wait: nothing to ack
    ack_at = T0 + 5 * S
    d.acknowledged("high_cpu_usage@a", "ana", ack_at)
    assert d.next_flush() == ack_at
    out = d.flush(ack_at)
    assert [(o.channel, o.notifications[0].status) for o in out] == [
        ("pager", "acknowledged"),
        ("slack", "acknowledged"),
    ]
    n = out[0].notifications[0]
    assert n.dedup_key == f"high_cpu_usage@a:{T0}:acknowledged"
    assert n.annotations["acknowledged_by"] == "ana"
    d.acknowledged("unknown", "ana", ack_at)
    assert d.next_flush() == T0 + 12 * S  # only the other group's wait is left


# --- keys ----------------------------------------------------------------------------------


def run(d: Dispatcher) -> list[str]:
    out: list[Outgoing] = []
    d.add(ev(at=T0))
    out += d.flush(T0 + 2 * S)
    d.add(ev("repeat", at=T0 + 15 * M, starts=T0))
    d.add(ev("escalate", at=T0 + 15 * M, starts=T0, tier=1, channel="boss"))
    out += d.flush(T0 + 16 * M)
    d.acknowledged("high_cpu_usage@a", "ana", T0 + 17 * M)
    d.add(ev("resolved", at=T0 + 18 * M, starts=T0))
    out += d.flush(T0 + 30 * M)
    return keys(out)


def test_dedup_keys_are_stable() -> None:
    first, second = run(Dispatcher(ROUTE, ())), run(Dispatcher(ROUTE, ()))
    assert first == second  # a restarted process produces the same keys
    fp = "high_cpu_usage@a"
    assert first == [
        f"{fp}:{T0}:firing",
        f"{fp}:{T0}:firing:e1",
        f"{fp}:{T0}:firing:r{T0 + 15 * M}",
        f"{fp}:{T0}:acknowledged",
        f"{fp}:{T0}:acknowledged",
        f"{fp}:{T0}:resolved",
        f"{fp}:{T0}:resolved",
    ]
    assert dedup_key("f", 1, "firing", repeat_at=2) == "f:1:firing:r2"
    assert dedup_key("f", 1, "firing", tier=3) == "f:1:firing:e3"


@pytest.mark.parametrize(
    "labels",
    [
        {"alertname": "x"},
        {"alertname": "x", "instance": "host:9100", "q": "a=b,c", "pct": "100%25"},
        {},
    ],
)
def test_group_key_round_trip(labels: dict[str, str]) -> None:
    key = group_key("route.routes[0]", sorted(labels.items()))
    assert group_labels(key) == labels
    assert key.rpartition(":")[0] == "route.routes[0]"


# --- restart -------------------------------------------------------------------------------


def test_seed_does_not_resend_but_inhibits_and_resolves() -> None:
    route = Route.model_validate({"channel": "team", "group_by": ["host"]})
    d = Dispatcher(route)
    d.seed([cpu("critical", "a", T0)], T0 + 10 * M)
    assert d.next_flush() is None and d.flush(T0 + 20 * M) == []
    d.add(cpu("warning", "a", T0 + 20 * M))
    assert d.flush(T0 + 30 * M) == []  # inhibited by the seeded critical
    d.add(cpu("critical", "a", T0 + 31 * M, "resolved", starts=T0))
    (msg,) = d.flush(T0 + 40 * M)
    assert [(n.fingerprint, n.status) for n in msg.notifications] == [
        ("critical_cpu_usage@a", "resolved"),
        ("high_cpu_usage@a", "firing"),
    ]


def test_seed_sends_what_the_outbox_never_got() -> None:
    d = Dispatcher(ROUTE, ())
    sent_before = {f"high_cpu_usage@a:{T0}:firing"}
    d.seed([ev(host="a", at=T0), ev(host="b", at=T0)], T0 + 10 * S, sent_before.__contains__)
    (msg,) = d.flush(T0 + 10 * S)  # b's group_wait ran out while down
    assert [n.fingerprint for n in msg.notifications] == ["high_cpu_usage@a", "high_cpu_usage@b"]
    assert keys([msg])[0] in sent_before  # a goes along with the same key: receivers drop it


def test_restored_events_match_the_lifecycle() -> None:
    rule = RuleConfig.model_validate(
        {
            "name": "critical_cpu_usage",
            "expr": "last(cpu) > 0.95",
            "severity": "critical",
            "labels": {"alertgroup": "cpu"},
            "annotations": {"summary": "{{ $labels.host }} at {{ $value }}"},
            "escalate_after": "1m",
            "escalate_to": ["boss"],
        }
    )
    lc = RuleLifecycle(rule)
    tags = make_tags({"host": "a"})
    events: list[Any] = lc.step(T0, {tags: 0.99}) + lc.step(T0 + 2 * M, {tags: 0.99})
    told = [e for e in events if isinstance(e, AlertEvent)]
    (alert,) = lc.alerts.values()
    restored = restored_events(alert, rule)
    assert [(e.reason, e.tier, e.channel) for e in restored] == [
        ("firing", 0, None),
        ("escalate", 1, "boss"),
    ]
    for mine, theirs in zip(restored, told, strict=True):
        assert (mine.labels, mine.annotations, mine.starts_at, mine.fingerprint) == (
            theirs.labels,
            theirs.annotations,
            theirs.starts_at,
            theirs.fingerprint,
        )
    # the processor's form: (alert, rule) pairs, whatever their state
    d = Dispatcher(ROUTE, ())
    d.seed([(alert, rule)], T0 + 3 * M)
    assert d.groups_of(alert.fingerprint) == [
        ("boss", "escalation:alertname=critical_cpu_usage"),
        ("team", "route:alertname=critical_cpu_usage"),
    ]


# --- odds and ends -------------------------------------------------------------------------


def test_no_route_sends_only_named_escalations() -> None:
    d = Dispatcher(None, ())
    d.add(ev(at=T0))
    assert d.next_flush() is None
    d.add(ev("escalate", at=T0 + M, starts=T0, tier=1, channel="boss"))
    assert [o.channel for o in d.flush(T0 + M)] == ["boss"]


def test_force_flushes_inside_group_wait() -> None:
    d = Dispatcher(ROUTE, ())
    d.add(ev(at=T0))
    assert d.flush(T0, force=True)[0].notifications[0].status == "firing"
    assert d.next_flush() is None


def test_outgoing_holds_channel_notifications() -> None:
    d = Dispatcher(ROUTE, (), generator_url="http://revopipe/alerts")
    d.add(ev(at=T0))
    (n,) = d.flush(T0 + 2 * S)[0].notifications
    assert isinstance(n, Notification)
    assert (n.alert_name, n.severity, n.fingerprint, n.starts_at_ns, n.ends_at_ns) == (
        "high_cpu_usage",
        "warning",
        "high_cpu_usage@a",
        T0,
        0,
    )
    assert n.generator_url == "http://revopipe/alerts"
    assert dict(n.labels) == {"host": "a", "alertname": "high_cpu_usage", "severity": "warning"}
    assert Notification.from_json(n.to_json()) == n
