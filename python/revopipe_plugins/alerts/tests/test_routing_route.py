"""The route tree: depth-first matching with `continue`, inheritance of channel, group_by
and timings, the TOML shape, and validation naming the route path and the fix."""

from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from revopipe_plugins.alerts.routing import Route

TREE = tomllib.loads(
    """
[route]
channel = "default"
group_by = ["alertname", "host"]
group_wait = "5s"

[[route.routes]]
matchers = ['severity="critical"']
channel = "pager"
group_wait = "0s"
continue = true

  [[route.routes.routes]]
  matchers = ['team="db"']
  channel = "db-pager"
  group_interval = "10m"

[[route.routes]]
matchers = ['{team=~"db|ops"}']
channel = "ops"
group_by = ["..."]

[[route.routes]]
matchers = ['escalation_tier="1"']
channel = "manager"

[[route.routes]]
matchers = ['team="web"']
"""
)["route"]


@pytest.fixture(scope="module")
def route() -> Route:
    return Route.model_validate(TREE)


@pytest.mark.parametrize(
    ("labels", "paths"),
    [
        ({"alertname": "x"}, ["route"]),  # nothing matches: the root takes it
        ({"severity": "critical"}, ["route.routes[0]"]),  # continue, but no later match
        ({"severity": "critical", "team": "ops"}, ["route.routes[0]", "route.routes[1]"]),
        (  # depth first: the child, then on to siblings because of continue
            {"severity": "critical", "team": "db"},
            ["route.routes[0].routes[0]", "route.routes[1]"],
        ),
        ({"team": "ops", "escalation_tier": "1"}, ["route.routes[1]"]),  # first match stops
        ({"escalation_tier": "1"}, ["route.routes[2]"]),
        ({"team": "web"}, ["route.routes[3]"]),
    ],
)
def test_match_paths(route: Route, labels: dict[str, str], paths: list[str]) -> None:
    assert [r.path for r in route.match(labels)] == paths


def test_inheritance(route: Route) -> None:
    by_path = {r.path: r for r in route.resolved()}
    root = by_path["route"]
    assert (root.channel, root.group_by, root.group_wait, root.group_interval) == (
        "default",
        ("alertname", "host"),
        5.0,
        60.0,
    )
    pager = by_path["route.routes[0]"]
    assert (pager.channel, pager.group_by, pager.group_wait, pager.continue_) == (
        "pager",
        ("alertname", "host"),
        0.0,
        True,
    )
    db = by_path["route.routes[0].routes[0]"]  # takes group_wait from its parent, not root
    assert (db.channel, db.group_wait, db.group_interval, db.continue_) == (
        "db-pager",
        0.0,
        600.0,
        False,
    )
    ops = by_path["route.routes[1]"]
    assert ops.group_by is None  # "..." = every label
    web = by_path["route.routes[3]"]
    assert web.channel == "default"  # no channel of its own: the parent's


def test_defaults() -> None:
    r = Route(channel="c").match({})[0]
    assert (r.group_by, r.group_wait, r.group_interval) == (("alertname",), 2.0, 60.0)


def test_group_labels(route: Route) -> None:
    labels = {"alertname": "cpu", "host": "a", "team": "ops", "severity": "warning"}
    root = route.resolved()[0]
    assert root.group_labels(labels) == (("alertname", "cpu"), ("host", "a"))
    assert root.group_labels({"alertname": "cpu"}) == (("alertname", "cpu"),)
    ops = route.match(labels)[0]
    assert ops.group_labels(labels) == tuple(sorted(labels.items()))


def test_validate_channels(route: Route) -> None:
    problems = route.validate_channels(["default", "pager", "ops"])
    assert len(problems) == 2
    assert problems[0].startswith("route.routes[0].routes[0].channel: unknown channel 'db-pager'")
    assert problems[1].startswith("route.routes[2].channel: unknown channel 'manager'")
    assert "use one of: default, ops, pager" in problems[0]
    assert route.validate_channels(["default", "pager", "ops", "db-pager", "manager"]) == []


def test_validate_root() -> None:
    problems = Route.model_validate({"matchers": ['a="b"']}).validate_channels(["x"])
    assert problems[0].startswith("route.channel: the root route needs a channel")
    assert problems[1].startswith("route.matchers: the root route matches every alert")


@pytest.mark.parametrize(
    ("table", "hint"),
    [
        ({"channel": "c", "matchers": ['a=~"("']}, "invalid regular expression"),
        ({"channel": "c", "group_by": ["...", "host"]}, "cannot be combined"),
        ({"channel": "c", "group_by": ["a", "a"]}, "listed twice"),
        ({"channel": "c", "group_wait": "soon"}, "group_wait"),
        ({"channel": "c", "group_wait": "-1s"}, "group_wait"),
        ({"channel": "c", "recievers": "x"}, "recievers"),  # extra keys are refused
        ({"channel": "c", "routes": [{"matchers": ["a"]}]}, "routes.0.matchers"),
    ],
)
def test_invalid(table: dict[str, object], hint: str) -> None:
    with pytest.raises(ValidationError, match=hint.replace("(", r"\(")):
        Route.model_validate(table)


def test_frozen_and_roundtrip(route: Route) -> None:
    with pytest.raises(ValidationError):
        route.channel = "other"  # type: ignore[misc]
    dumped = route.model_dump(by_alias=True, exclude_none=True)
    assert Route.model_validate(dumped) == route
