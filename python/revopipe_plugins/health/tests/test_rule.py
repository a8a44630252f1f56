"""The aggregation rule of `revopipe.health`: table-driven cases and a hypothesis test
against a plain restatement of the documented rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revopipe.events import HealthStatus
from revopipe.health import MAX_NAMED, HealthEntry, PipelineHealth, overall

H, D, U = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


def comp(name: str, status: HealthStatus, reason: str = "") -> HealthEntry:
    return HealthEntry(f"component:{name}", "component", status, reason)


def svc(name: str, status: HealthStatus, reason: str = "", required: bool = True) -> HealthEntry:
    return HealthEntry(f"service:{name}", "service", status, reason, required=required)


@pytest.mark.parametrize(
    ("entries", "status", "culprits"),
    [
        ([], H, ()),
        ([comp("a", H), svc("s", H)], H, ()),
        ([comp("a", D, "recovered")], D, ("component:a",)),
        ([comp("a", U, "write raised X")], U, ("component:a",)),
        ([svc("s", U, "down")], U, ("service:s",)),
        # an optional service that is down degrades, it does not fail the whole
        ([svc("s", U, "down", required=False)], D, ("service:s",)),
        ([svc("s", U, required=False), comp("a", D)], D, ("service:s", "component:a")),
        ([svc("s", U, required=False), svc("r", U)], U, ("service:r",)),
        ([comp("a", D), svc("s", H), comp("b", U)], U, ("component:b",)),
        ([svc("s", D, required=False)], D, ("service:s",)),
    ],
)
def test_overall_by_the_documented_rule(
    entries: list[HealthEntry], status: HealthStatus, culprits: tuple[str, ...]
) -> None:
    result = overall(entries)
    assert result.status is status
    assert result.culprits == culprits
    for subject in culprits:
        assert subject in result.reason
    assert (result.reason == "") == (status is H)


def test_reason_names_each_culprit_with_its_reason_and_caps_the_list() -> None:
    r = overall([comp("out", U, "write raised ConnectionError"), svc("api", U, "no data for 30s")])
    assert r.reason == "component:out: write raised ConnectionError; service:api: no data for 30s"
    # no reason given: the status stands in
    assert overall([svc("api", D)]).reason == "service:api: degraded"
    many = [svc(f"s{i}", U, "down") for i in range(MAX_NAMED + 3)]
    r = overall(many)
    assert r.reason.endswith("and 3 more")
    assert r.reason.count("service:") == MAX_NAMED
    assert len(r.culprits) == MAX_NAMED + 3


def test_degraded_reason_lists_optional_unhealthy_before_degraded() -> None:
    r = overall([comp("a", D, "recovered"), svc("cache", U, "down", required=False)])
    assert r.status is D
    assert r.culprits == ("service:cache", "component:a")


statuses = st.sampled_from([H, D, U])
entry = st.builds(
    HealthEntry,
    subject=st.text("abc", min_size=1, max_size=3).map(lambda s: f"service:{s}"),
    kind=st.sampled_from(["component", "service"]),
    status=statuses,
    reason=st.text(max_size=5),
    required=st.booleans(),
)


def reference(entries: list[HealthEntry]) -> HealthStatus:
    """The rule as the docs state it, written the plain way."""
    if any(e.required and e.status == "unhealthy" for e in entries):
        return U
    if any(e.status == "degraded" for e in entries) or any(
        not e.required and e.status == "unhealthy" for e in entries
    ):
        return D
    return H


@given(st.lists(entry, max_size=12))
def test_overall_matches_the_reference(entries: list[HealthEntry]) -> None:
    result = overall(entries)
    assert result.status is reference(entries)
    # the culprits are exactly the entries that, alone, would give this status
    expected = [
        e.subject for e in entries if result.status is not H and reference([e]) is result.status
    ]
    assert sorted(result.culprits) == sorted(expected)
    # order does not change the status
    assert overall(list(reversed(entries))).status is result.status


def test_readiness_verdict() -> None:
    down = (svc("api", U, "down"),)
    up = (svc("api", D, "slow"),)

    def verdict(entries: tuple[HealthEntry, ...], started: bool, draining: bool) -> list[str]:
        return PipelineHealth(overall(entries), entries, started, draining).not_ready

    assert verdict(up, True, False) == []  # degraded is still ready
    assert verdict(down, True, False) == ["unhealthy: service:api: down"]
    assert verdict(up, True, True) == ["the pipeline is draining (stopping)"]
    assert verdict(up, False, False) == ["the pipeline is not running (starting or stopped)"]
