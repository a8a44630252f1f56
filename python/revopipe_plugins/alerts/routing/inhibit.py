"""Inhibition: a firing alert mutes others, as Alertmanager's `inhibit_rules`. A target alert
(matching `target_matchers`) is muted while some other firing alert matches
`source_matchers` and has the same value for every label in `equal` (absent reads as "").

```toml
[[processors.alerts.inhibit_rules]]
source_matchers = ['severity="critical"']
target_matchers = ['severity="warning"']
equal = ["alertname", "host.name"]
```

One revopipe extension: `"..."` in `equal` stands for every label except `alertname` and
`severity`, i.e. "the same series" — the warning and critical default rules watch the
same series with different thresholds, so their labels differ only in those two (and the
series labels vary by pipeline, so naming them would not work for every user).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from revopipe_plugins.alerts.routing.matchers import Matcher, matches_all, parse_matchers

__all__ = ["DEFAULT_INHIBIT_RULES", "SAME_SERIES", "InhibitRule", "Inhibitor"]

SAME_SERIES = "..."
_NOT_SERIES = frozenset({"alertname", "severity"})

_Key = tuple[tuple[str, str], ...]


class InhibitRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_matchers: tuple[str, ...] = Field(description="what the muting alert matches")
    target_matchers: tuple[str, ...] = Field(description="what the muted alert matches")
    equal: tuple[str, ...] = Field((), description='labels equal on both; "..." = same series')

    _source: tuple[Matcher, ...] = PrivateAttr(())
    _target: tuple[Matcher, ...] = PrivateAttr(())

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _non_empty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError(
                "must list at least one matcher, e.g. ['severity=\"critical\"']; an empty "
                "list would match every alert"
            )
        for text in v:
            parse_matchers(text)
        return v

    @model_validator(mode="after")
    def _parse(self) -> InhibitRule:
        self._source = tuple(m for t in self.source_matchers for m in parse_matchers(t))
        self._target = tuple(m for t in self.target_matchers for m in parse_matchers(t))
        return self

    def source_matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self._source, labels)

    def target_matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self._target, labels)

    def key(self, labels: Mapping[str, str]) -> _Key:
        """What must be equal between a source and a target."""
        named = tuple((k, labels.get(k, "")) for k in self.equal if k != SAME_SERIES)
        if SAME_SERIES not in self.equal:
            return named
        rest = tuple(sorted((k, v) for k, v in labels.items() if k not in _NOT_SERIES and v))
        # Empty values are dropped above so that "absent" and "" stay equal, as for named
        # labels; the sentinel pair cannot collide with a real label name.
        return (*named, ("\0...", ""), *rest)


# Critical mutes warning for the same series in the same `alertgroup` (the default rules
# high_cpu_usage/critical_cpu_usage carry alertgroup="cpu", and so on). Critical alerts
# without an alertgroup (service_down) mute nothing.
DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(
        source_matchers=('severity="critical"', 'alertgroup!=""'),
        target_matchers=('severity="warning"',),
        equal=("alertgroup", SAME_SERIES),
    ),
)


@dataclass(slots=True)
class _Source:
    labels: Mapping[str, str]
    also_target: bool  # matches the same rule's target too (see `inhibited_by`)


class Inhibitor:
    """The currently firing alerts, indexed per rule by their `equal` values, so a lookup
    costs one dict probe per rule whatever the number of alerts."""

    def __init__(self, rules: Sequence[InhibitRule] = DEFAULT_INHIBIT_RULES) -> None:
        self.rules = tuple(rules)
        self._index: list[dict[_Key, dict[str, _Source]]] = [{} for _ in self.rules]
        self._where: dict[str, list[tuple[int, _Key]]] = {}

    def firing(self, fingerprint: str, labels: Mapping[str, str]) -> None:
        """Record (or update) a firing alert."""
        self.resolved(fingerprint)
        where: list[tuple[int, _Key]] = []
        for i, rule in enumerate(self.rules):
            if rule.source_matches(labels):
                key = rule.key(labels)
                self._index[i].setdefault(key, {})[fingerprint] = _Source(
                    dict(labels), rule.target_matches(labels)
                )
                where.append((i, key))
        if where:
            self._where[fingerprint] = where

    def resolved(self, fingerprint: str) -> None:
        """Forget an alert (resolved, or no longer known); unknown fingerprints are fine."""
        for i, key in self._where.pop(fingerprint, ()):
            bucket = self._index[i][key]
            bucket.pop(fingerprint, None)
            if not bucket:
                del self._index[i][key]

    def set_firing(self, alerts: Mapping[str, Mapping[str, str]]) -> None:
        """Replace everything with `alerts` (fingerprint -> labels)."""
        for fp in list(self._where):
            self.resolved(fp)
        for fp, labels in alerts.items():
            self.firing(fp, labels)

    def inhibited_by(self, labels: Mapping[str, str], fingerprint: str | None = None) -> list[str]:
        """Fingerprints of the firing alerts that mute `labels` (empty: not inhibited).
        An alert never mutes itself: `fingerprint` (or, without it, identical labels) is
        skipped. As in Alertmanager, when the alert matches a rule's source matchers too,
        sources that also match the target side are skipped, so two such alerts cannot
        mute each other."""
        out: list[str] = []
        for i, rule in enumerate(self.rules):
            if not self._index[i] or not rule.target_matches(labels):
                continue
            bucket = self._index[i].get(rule.key(labels))
            if not bucket:
                continue
            two_sided = rule.source_matches(labels)
            for fp, src in bucket.items():
                if fp == fingerprint or (fingerprint is None and src.labels == labels):
                    continue
                if two_sided and src.also_target:
                    continue
                out.append(fp)
        return sorted(set(out))

    def inhibited(self, labels: Mapping[str, str], fingerprint: str | None = None) -> bool:
        return bool(self.inhibited_by(labels, fingerprint))
