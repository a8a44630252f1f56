"""The `[processors.<name>]` table of an `alerts` processor, validated whole at load time so
`revopipe validate` names a bad rule, an unknown channel type or a route to a channel that
does not exist before anything runs."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from revopipe.config import Duration, ProcessorConfig
from revopipe.config.errors import validation_text
from revopipe.notify import Channel, ChannelConfig
from revopipe.plugins import Registry, default_registry
from revopipe_plugins.alerts.routing import DEFAULT_INHIBIT_RULES, InhibitRule, Route
from revopipe_plugins.alerts.rule import RuleConfig, merge_rules

ResolvedChannel = tuple[type[Channel], ChannelConfig]
"""A configured channel: its class and validated config."""


class AlertsConfig(ProcessorConfig):
    rules: list[RuleConfig] = Field(
        default_factory=list, description="your own rules, each a [[...rules]] table"
    )
    rules_file: Path | None = Field(
        default=None,
        description="a TOML file of more [[rules]] (relative to the working directory)",
    )
    default_rules: bool = Field(
        default=True, description="include the built-in default rules (see the README)"
    )
    defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="changes to default rules by name, e.g. [....defaults.high_cpu_usage] "
        "with for = '10m' or enabled = false",
    )
    evaluate_every: Duration = Field(
        default=1.0,
        gt=0,
        description="evaluate at most this often as data arrives, and at least this often "
        "so `for` timers and missing data advance, e.g. '1s'",
    )
    stale_after: Duration = Field(
        default=120.0,
        gt=0,
        description="a series not updated for this long counts as missing, e.g. '2m'",
    )
    startup_grace: Duration = Field(
        default=15.0,
        ge=0,
        description="after a restart, how long alerts that were firing stay firing while "
        "their series have not been seen again (the stream starts empty), e.g. '15s'",
    )
    resolved_retention: Duration = Field(
        default=900.0, ge=0, description="how long `alerts list` shows resolved alerts"
    )
    channels: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="notification channels by name, each with a `type` (webhook, slack, "
        "pagerduty, email, alertmanager, sms or a plugin's)",
    )
    route: Route | None = Field(
        default=None,
        description="the routing tree; leave out to send everything to the only channel",
    )
    inhibit_rules: list[InhibitRule] = Field(
        default_factory=lambda: list(DEFAULT_INHIBIT_RULES),
        description="alerts that mute others while firing; the default lets a critical "
        "alert mute the warning of the same `alertgroup` on the same series",
    )
    outbox_backoff: Duration = Field(
        default=1.0, gt=0, description="first retry delay of a failing channel, e.g. '1s'"
    )
    outbox_backoff_max: Duration = Field(
        default=300.0, gt=0, description="longest retry delay, e.g. '5m'"
    )

    _rules: list[RuleConfig] = PrivateAttr(default_factory=list)
    _channels: dict[str, ResolvedChannel] = PrivateAttr(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _channel_tables(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, table in v.items():
            if not isinstance(table, dict) or not isinstance(table.get("type"), str):
                raise ValueError(f"channels.{name}: needs a `type` key, e.g. type = 'webhook'")
        return v

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> AlertsConfig:
        registry = _registry(info)
        extra: list[dict[str, Any]] = []
        if self.rules_file is not None:
            extra = _read_rules_file(self.rules_file)
        try:
            rules = merge_rules(
                self.defaults,
                [*self.rules, *extra],
                defaults=None if self.default_rules else [],
            )
        except ValueError as exc:
            # a ValidationError from a rule in rules_file or an override, as one message
            raise ValueError(_error_text(exc)) from None
        channels: dict[str, ResolvedChannel] = {}
        for name, table in self.channels.items():
            try:
                cls = registry.channel_class(table["type"], where=f"channels.{name}")
            except LookupError as exc:
                raise ValueError(str(exc)) from None
            try:
                channels[name] = (cls, cls.Config.model_validate(table))
            except ValueError as exc:
                raise ValueError(f"channels.{name} ({table['type']}): {_error_text(exc)}") from None
        route = self.effective_route(channels)
        problems = route.validate_channels(set(channels)) if route else []
        for rule in rules:
            for target in rule.escalate_to:
                if target not in channels:
                    problems.append(
                        f"rule {rule.name!r}: escalate_to names channel {target!r}, which is "
                        f"not configured; add [...channels.{target}] or fix the name"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        self._rules = rules
        self._channels = channels
        return self

    def effective_route(self, channels: dict[str, ResolvedChannel] | None = None) -> Route | None:
        """The configured route, or with exactly one channel and no route, a root route to
        it; None when nothing can be notified (alerts still evaluate, list and persist)."""
        if self.route is not None:
            return self.route
        names = list(self._channels if channels is None else channels)
        if len(names) == 1:
            return Route(channel=names[0])
        if names:
            raise ValueError(
                f"route: {len(names)} channels ({', '.join(names)}) and no route; add a "
                "[...route] table with `channel` (and `routes` to pick between them)"
            )
        return None

    @property
    def resolved_rules(self) -> list[RuleConfig]:
        """The enabled rules: defaults with overrides, then the file's and the rules file's."""
        return self._rules

    @property
    def resolved_channels(self) -> dict[str, ResolvedChannel]:
        return self._channels


def _registry(info: ValidationInfo) -> Registry:
    context = info.context if isinstance(info.context, dict) else {}
    registry = context.get("registry")
    return registry if isinstance(registry, Registry) else default_registry()


def _read_rules_file(path: Path) -> list[dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(
            f"rules_file: cannot read {str(path)!r}: {exc.strerror or exc}; check the path "
            "(relative paths start at the working directory)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"rules_file {str(path)!r}: not valid TOML: {exc}") from None
    rules = data.get("rules", [])
    unknown = set(data) - {"rules"}
    if unknown or not isinstance(rules, list):
        raise ValueError(
            f"rules_file {str(path)!r}: expected only [[rules]] tables, found "
            f"{', '.join(sorted(unknown)) or 'rules that is not a list of tables'}"
        )
    return rules


def _error_text(exc: ValueError) -> str:
    return validation_text(exc, "<table>") if isinstance(exc, ValidationError) else str(exc)
