"""Silences in SQLite: active only in their time range, expire, survive reopening, refuse
matchers that would mute everything, and see changes made by another connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from revopipe_plugins.alerts.routing import SilenceStore, parse_matcher

S = 1_000_000_000
T0 = 1_700_000_000 * S
WEB1 = {"alertname": "high_cpu_usage", "host": "web-1"}


def test_active_window_expire_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "alerts" / "silences.db"
    with SilenceStore(path) as store:
        s = store.add(
            ['host="web-1"', 'alertname=~"high_.*"'],
            starts_at=T0 + 10 * S,
            ends_at=T0 + 70 * S,
            created_by="ana",
            comment="maintenance",
        )
        assert store.muted_by(WEB1, T0) == []  # not started yet
        assert store.muted_by(WEB1, T0 + 10 * S) == [s.id]
        assert store.muted_by({**WEB1, "host": "web-2"}, T0 + 10 * S) == []
        assert store.muted_by(WEB1, T0 + 70 * S) == []  # ends_at is exclusive
        assert s.state(T0) == "pending" and s.state(T0 + 20 * S) == "active"
    with SilenceStore(path) as store:  # a restart keeps it, matchers included
        (again,) = store.list(False, T0 + 20 * S)
        assert again == s
        assert [str(m) for m in again.matchers] == ['host="web-1"', 'alertname=~"high_.*"']
        assert store.muted_by(WEB1, T0 + 20 * S) == [s.id]
        ended = store.expire(s.id, T0 + 30 * S)
        assert ended.ends_at == T0 + 30 * S and ended.state(T0 + 30 * S) == "expired"
        assert store.muted_by(WEB1, T0 + 30 * S) == []
        assert store.expire(s.id, T0 + 40 * S).ends_at == T0 + 30 * S  # already over
    with SilenceStore(path) as store:
        assert store.list(False, T0 + 31 * S) == []
        assert [x.id for x in store.list(True, T0 + 31 * S)] == [s.id]
        assert store.get(s.id) is not None and store.get("nope") is None
        assert store.purge(T0 + 31 * S) == 1
        assert store.list(True, T0) == []


def test_changes_by_another_connection_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "silences.db"
    with SilenceStore(path) as a, SilenceStore(path) as b:
        assert a.muted_by(WEB1, T0) == []  # loads a's cache
        s = b.add(['host="web-1"'], starts_at=T0, ends_at=T0 + S, created_by="cli")
        assert a.muted_by(WEB1, T0) == [s.id]
        b.expire(s.id, T0)
        assert a.muted_by(WEB1, T0) == []


def test_shares_a_database_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with SilenceStore(path) as store:
        store.add([parse_matcher('a="b"')], starts_at=T0, ends_at=T0 + S, created_by="x")
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"other", "alert_silences"} <= tables


@pytest.mark.parametrize(
    ("matchers", "starts", "ends", "by", "hint"),
    [
        ([], T0, T0 + S, "x", "at least one matcher is required"),
        (["{}"], T0, T0 + S, "x", "at least one matcher is required"),
        (['a=""', 'b=~".*"'], T0, T0 + S, "x", "would mute nearly everything"),
        (['a!="x"'], T0, T0 + S, "x", "would mute nearly everything"),
        (['a="b"'], T0, T0, "x", "must be after starts_at"),
        (['a="b"'], T0, T0 + S, " ", "created_by"),
        (["a~b"], T0, T0 + S, "x", "expected one of"),
    ],
)
def test_refused(
    tmp_path: Path, matchers: list[str], starts: int, ends: int, by: str, hint: str
) -> None:
    with SilenceStore(tmp_path / "s.db") as store:
        with pytest.raises(ValueError, match=hint):
            store.add(matchers, starts_at=starts, ends_at=ends, created_by=by)
        assert store.list(True, T0) == []  # nothing half-written


def test_expire_unknown(tmp_path: Path) -> None:
    with SilenceStore(tmp_path / "s.db") as store, pytest.raises(LookupError, match="nope"):
        store.expire("nope", T0)
