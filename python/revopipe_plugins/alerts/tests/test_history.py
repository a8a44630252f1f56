"""Alert history in SQLite: every transition and ack recorded and queryable, WAL mode, and
state persisted so a restart resumes pending timers and firing alerts (acks, escalation
progress, repeat schedule)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from revopipe.events import make_tags
from revopipe_plugins.alerts.history import History
from revopipe_plugins.alerts.lifecycle import Notification, RuleLifecycle, State, fingerprint
from revopipe_plugins.alerts.rule import RuleConfig

S = 1_000_000_000
M = 60 * S
T0 = 1_700_000_000 * S
A = make_tags({"host": "a"})
B = make_tags({"host": "b"})


def make_rule(**kw: Any) -> RuleConfig:
    data: dict[str, Any] = {"name": "cpu", "expr": "last(cpu) > 0.8"}
    data.update(kw)
    return RuleConfig.model_validate(data)


def step(h: History, life: RuleLifecycle, now: int, results: dict[Any, float]) -> list[Any]:
    events = life.step(now, results)
    h.record(events, life.rule.name, life.alerts.values())
    return events


def test_every_transition_and_ack_recorded(tmp_path: Path) -> None:
    with History(tmp_path / "alerts.db") as h:
        life = RuleLifecycle(make_rule(**{"for": "1m"}))
        step(h, life, T0, {A: 0.9, B: 0.85})
        step(h, life, T0 + M, {A: 0.95})
        ack = life.ack(fingerprint("cpu", A), "alice", T0 + 2 * M)
        h.record([ack], "cpu", life.alerts.values())
        step(h, life, T0 + 3 * M, {})

        rows = h.query()
        assert [
            (r.kind, r.labels, r.from_state, r.to_state, r.value, r.at, r.by) for r in rows
        ] == [
            ("transition", {"host": "a"}, State.INACTIVE, State.PENDING, 0.9, T0, None),
            ("transition", {"host": "b"}, State.INACTIVE, State.PENDING, 0.85, T0, None),
            ("transition", {"host": "a"}, State.PENDING, State.FIRING, 0.95, T0 + M, None),
            ("transition", {"host": "b"}, State.PENDING, State.INACTIVE, 0.85, T0 + M, None),
            ("ack", {"host": "a"}, State.FIRING, State.FIRING, 0.95, T0 + 2 * M, "alice"),
            ("transition", {"host": "a"}, State.FIRING, State.RESOLVED, 0.95, T0 + 3 * M, None),
        ]
        assert {r.rule for r in rows} == {"cpu"}

        fp_a = fingerprint("cpu", A)
        assert len(h.query(fingerprint=fp_a)) == 4
        assert [r.at for r in h.query(since=T0 + M, until=T0 + 3 * M)] == [T0 + M] * 2 + [
            T0 + 2 * M
        ]
        assert [r.kind for r in h.query(limit=2)] == ["ack", "transition"]
        assert h.query(rule="other") == []


def test_wal_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    with History(path) as h:
        step(h, RuleLifecycle(make_rule()), T0, {A: 0.9})
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with History(path) as h:
        assert [(r.from_state, r.to_state) for r in h.query()] == [
            (State.INACTIVE, State.PENDING),
            (State.PENDING, State.FIRING),
        ]


def test_restart_resumes_pending_timer(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    rule = make_rule(**{"for": "1m"})
    with History(path) as h:
        life = RuleLifecycle(rule)
        step(h, life, T0, {A: 0.9})
        step(h, life, T0 + 30 * S, {A: 0.9})
    with History(path) as h:
        resumed = RuleLifecycle(rule)
        resumed.restore(h.load("cpu"))
        assert resumed.alerts[fingerprint("cpu", A)].state is State.PENDING
        events = step(h, resumed, T0 + 60 * S, {A: 0.9})
        assert [e.reason for e in events if isinstance(e, Notification)] == ["firing"]


def test_restart_resumes_firing_alert_with_ack_and_escalation(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    rule = make_rule(escalate_after="10m", escalate_to=["l2", "l3"], repeat_interval="30m")
    fp_a, fp_b = fingerprint("cpu", A), fingerprint("cpu", B)
    with History(path) as h:
        life = RuleLifecycle(rule)
        step(h, life, T0, {A: 0.9, B: 0.9})
        step(h, life, T0 + 10 * M, {A: 0.9, B: 0.9})  # tier 1 for both
        h.record([life.ack(fp_b, "bob", T0 + 11 * M)], "cpu", life.alerts.values())
        before = {fp: a.to_json() for fp, a in life.alerts.items()}
    with History(path) as h:
        resumed = RuleLifecycle(rule)
        resumed.restore(h.load("cpu"))
        assert {fp: a.to_json() for fp, a in resumed.alerts.items()} == before
        assert resumed.alerts[fp_b].acked_by == "bob"
        events = step(h, resumed, T0 + 20 * M, {A: 0.9, B: 0.9})
        # no new "firing": A continues with tier 2; B is acknowledged, so nothing
        notes = [(e.fingerprint, e.reason, e.tier) for e in events if isinstance(e, Notification)]
        assert notes == [(fp_a, "escalate", 2)]
        events = step(h, resumed, T0 + 30 * M, {A: 0.9, B: 0.9})
        notes = [(e.fingerprint, e.reason) for e in events if isinstance(e, Notification)]
        assert notes == [(fp_a, "repeat")]


def test_state_follows_the_lifecycle(tmp_path: Path) -> None:
    with History(tmp_path / "alerts.db") as h:
        life = RuleLifecycle(make_rule(), resolved_retention=60)
        other = RuleLifecycle(make_rule(name="mem"))
        step(h, other, T0, {A: 0.9})
        step(h, life, T0, {A: 0.9})
        assert [a.state for a in h.load("cpu")] == [State.FIRING]
        step(h, life, T0 + S, {})
        assert [a.state for a in h.load("cpu")] == [State.RESOLVED]
        step(h, life, T0 + 2 * M, {})
        assert h.load("cpu") == []
        assert [a.rule for a in h.load("mem")] == ["mem"]  # other rules untouched


def test_restore_ignores_other_rules(tmp_path: Path) -> None:
    with History(tmp_path / "alerts.db") as h:
        mem = RuleLifecycle(make_rule(name="mem"))
        step(h, mem, T0, {A: 0.9})
        cpu = RuleLifecycle(make_rule())
        cpu.restore(h.load("mem"))
        assert cpu.alerts == {}
