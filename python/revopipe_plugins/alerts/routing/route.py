"""The route tree: which channel an alert goes to and how alerts are grouped, as in
Alertmanager. In `pipeline.toml`:

```toml
[processors.alerts.route]
channel = "team-slack"              # the fallback for alerts no child route takes
group_by = ["alertname"]            # ["..."] groups by every label (one alert per group)
group_wait = "2s"                   # a new group waits this long to collect its alerts
group_interval = "1m"               # later changes to a group go out at most this often

[[processors.alerts.route.routes]]
matchers = ['severity="critical"']
channel = "pagerduty"
continue = true                     # also try the next sibling routes

[[processors.alerts.route.routes]]
matchers = ['escalation_tier="1"']
channel = "oncall-manager"
```

A child takes every key it leaves out from its parent. Matching is depth first: an alert
goes down the first child whose matchers all hold (and on to later siblings only when that
child has `continue = true`); when no child takes it, the parent itself does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from revopipe.config import Duration
from revopipe_plugins.alerts.routing.matchers import Matcher, matches_all, parse_matchers

__all__ = ["ALL_LABELS", "ResolvedRoute", "Route", "RouteConfig"]

ALL_LABELS = "..."
DEFAULT_GROUP_BY: tuple[str, ...] = ("alertname",)
DEFAULT_GROUP_WAIT = 2.0
DEFAULT_GROUP_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class ResolvedRoute:
    """A matched route with every inherited value filled in. `path` names it in the config
    (`route`, `route.routes[1]`, ...) and in group keys; `group_by` is None for `...`
    (every label). Times are seconds."""

    path: str
    channel: str | None
    group_by: tuple[str, ...] | None
    group_wait: float
    group_interval: float
    continue_: bool
    matchers: tuple[Matcher, ...]

    def group_labels(self, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The (name, value) pairs that pick this alert's group, sorted by name; a label
        the alert lacks is left out (it would read as "" anyway)."""
        if self.group_by is None:
            return tuple(sorted(labels.items()))
        return tuple(sorted((k, labels[k]) for k in set(self.group_by) if k in labels))


class Route(BaseModel):
    """One node of the route tree; the root is `[processors.<name>.route]`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    channel: str | None = Field(None, description="the channel (receiver) name")
    matchers: tuple[str, ...] = Field((), description='label matchers, e.g. severity="critical"')
    group_by: tuple[str, ...] | None = Field(
        None, description='labels to group by; ["..."] = every label; default ["alertname"]'
    )
    group_wait: Duration | None = Field(None, description="how long a new group waits")
    group_interval: Duration | None = Field(None, description="minimum time between sends")
    continue_: bool = Field(False, alias="continue", description="also try later siblings")
    routes: tuple[Route, ...] = ()

    _matchers: tuple[Matcher, ...] = PrivateAttr(())
    _tree: _Node | None = PrivateAttr(None)

    @field_validator("matchers")
    @classmethod
    def _check_matchers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for text in v:
            parse_matchers(text)  # ValueError names the matcher and column
        return v

    @field_validator("group_by")
    @classmethod
    def _check_group_by(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        if ALL_LABELS in v and len(v) > 1:
            raise ValueError(
                'group_by: "..." (every label) cannot be combined with other labels; '
                'write either ["..."] or a list of label names'
            )
        dupes = sorted({x for x in v if v.count(x) > 1})
        if dupes:
            raise ValueError(f"group_by: {', '.join(dupes)} listed twice; list each label once")
        if any(not x for x in v):
            raise ValueError("group_by: empty label name; remove the empty string")
        return v

    @field_validator("group_wait", "group_interval")
    @classmethod
    def _non_negative(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError("must not be negative, e.g. '30s'")
        return v

    @model_validator(mode="after")
    def _parse(self) -> Route:
        self._matchers = tuple(m for text in self.matchers for m in parse_matchers(text))
        # Built here, not lazily, so equal configs stay equal (pydantic compares private
        # attributes too). Each node builds its subtree as if it were the root; only the
        # root's is used, and trees are small.
        self._tree = _compile(self, None, "route")
        return self

    # --- use ----------------------------------------------------------------------------

    def match(self, labels: Mapping[str, str]) -> list[ResolvedRoute]:
        """The routes `labels` goes to, in tree order; never empty (the root always
        matches, whatever its own matchers say)."""
        return _match(self._compiled(), labels, root=True)

    def resolved(self) -> list[ResolvedRoute]:
        """Every node of the tree, root first, with inherited values filled in."""
        out: list[ResolvedRoute] = []

        def walk(node: _Node) -> None:
            out.append(node.resolved)
            for c in node.children:
                walk(c)

        walk(self._compiled())
        return out

    def validate_channels(self, names: Iterable[str]) -> list[str]:
        """Problems with the tree given the configured channel `names`; each names the
        route path (`route.routes[1].channel`) and the fix. Empty when all is well."""
        known = set(names)
        listing = ", ".join(sorted(known)) or "none configured"
        errors: list[str] = []
        if self.channel is None:
            errors.append(
                "route.channel: the root route needs a channel (it takes every alert no child "
                f'route matches); set channel = "<name>" (configured: {listing})'
            )
        if self.matchers:
            errors.append(
                "route.matchers: the root route matches every alert; move the matchers to a "
                "child route under [[...route.routes]]"
            )

        def walk(node: Route, path: str) -> None:
            if node.channel is not None and node.channel not in known:
                errors.append(
                    f"{path}.channel: unknown channel {node.channel!r}; configure a channel "
                    f"with that name or use one of: {listing}"
                )
            for i, child in enumerate(node.routes):
                walk(child, f"{path}.routes[{i}]")

        walk(self, "route")
        return errors

    def _compiled(self) -> _Node:
        assert self._tree is not None
        return self._tree


@dataclass(frozen=True, slots=True)
class _Node:
    resolved: ResolvedRoute
    children: tuple[_Node, ...]


def _compile(cfg: Route, parent: ResolvedRoute | None, path: str) -> _Node:
    if parent is None:
        group_by: tuple[str, ...] | None = DEFAULT_GROUP_BY
        inherited = ResolvedRoute(
            path, None, group_by, DEFAULT_GROUP_WAIT, DEFAULT_GROUP_INTERVAL, False, ()
        )
    else:
        inherited = parent
    if cfg.group_by is None:
        group_by = inherited.group_by
    else:
        group_by = None if cfg.group_by == (ALL_LABELS,) else cfg.group_by
    me = ResolvedRoute(
        path=path,
        channel=cfg.channel if cfg.channel is not None else inherited.channel,
        group_by=group_by,
        group_wait=cfg.group_wait if cfg.group_wait is not None else inherited.group_wait,
        group_interval=(
            cfg.group_interval if cfg.group_interval is not None else inherited.group_interval
        ),
        continue_=cfg.continue_,
        matchers=cfg._matchers if parent is not None else (),
    )
    children = tuple(_compile(c, me, f"{path}.routes[{i}]") for i, c in enumerate(cfg.routes))
    return _Node(me, children)


def _match(node: _Node, labels: Mapping[str, str], root: bool) -> list[ResolvedRoute]:
    if not root and not matches_all(node.resolved.matchers, labels):
        return []
    out: list[ResolvedRoute] = []
    for child in node.children:
        got = _match(child, labels, root=False)
        if got:
            out.extend(got)
            if not child.resolved.continue_:
                break
    return out or [node.resolved]


RouteConfig = Route  # the name used in the brief; one class
