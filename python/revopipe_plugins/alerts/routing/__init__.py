"""Alertmanager-style routing for the alerting plugin: label matchers, the route tree,
inhibition, silences and the dispatcher that groups alerts into channel messages. Pure
logic (time is an argument); only the silence store writes to disk (SQLite)."""

from revopipe_plugins.alerts.routing.dispatcher import (
    ESCALATION_LABEL,
    Dispatcher,
    DispatcherStats,
    Muted,
    Outgoing,
    dedup_key,
    group_key,
    group_labels,
    restored_events,
)
from revopipe_plugins.alerts.routing.inhibit import DEFAULT_INHIBIT_RULES, Inhibitor, InhibitRule
from revopipe_plugins.alerts.routing.matchers import (
    Matcher,
    MatchOp,
    matches_all,
    parse_matcher,
    parse_matchers,
)
from revopipe_plugins.alerts.routing.route import ResolvedRoute, Route, RouteConfig
from revopipe_plugins.alerts.routing.silence import Silence, SilenceStore

__all__ = [
    "DEFAULT_INHIBIT_RULES",
    "ESCALATION_LABEL",
    "Dispatcher",
    "DispatcherStats",
    "InhibitRule",
    "Inhibitor",
    "MatchOp",
    "Matcher",
    "Muted",
    "Outgoing",
    "ResolvedRoute",
    "Route",
    "RouteConfig",
    "Silence",
    "SilenceStore",
    "dedup_key",
    "group_key",
    "group_labels",
    "matches_all",
    "parse_matcher",
    "parse_matchers",
    "restored_events",
]
