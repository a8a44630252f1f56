"""Inhibition: a firing source mutes targets with equal labels; never itself; the default
rule (critical mutes warning of the same alertgroup and series)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from revopipe_plugins.alerts.routing import DEFAULT_INHIBIT_RULES, Inhibitor, InhibitRule

RULE = InhibitRule(
    source_matchers=('severity="critical"',),
    target_matchers=('severity="warning"',),
    equal=("alertname", "host"),
)


@pytest.mark.parametrize(
    ("firing", "target", "muted"),
    [
        # same alertname and host: muted
        ({"alertname": "cpu", "host": "a", "severity": "critical"}, {"host": "a"}, True),
        # an equal label differs: not muted
        ({"alertname": "cpu", "host": "b", "severity": "critical"}, {"host": "a"}, False),
        # source is not critical
        ({"alertname": "cpu", "host": "a", "severity": "warning"}, {"host": "a"}, False),
        # absent on both sides reads as "" = "": muted, as in Alertmanager
        ({"alertname": "cpu", "severity": "critical"}, {}, True),
        ({"alertname": "cpu", "severity": "critical"}, {"host": "a"}, False),
    ],
)
def test_equal_labels(firing: dict[str, str], target: dict[str, str], muted: bool) -> None:
    inh = Inhibitor([RULE])
    inh.firing("src", firing)
    labels = {"alertname": "cpu", "severity": "warning", **target}
    assert inh.inhibited(labels, "tgt") is muted
    assert inh.inhibited_by(labels, "tgt") == (["src"] if muted else [])


def test_resolve_unmutes_and_updates() -> None:
    inh = Inhibitor([RULE])
    warn = {"alertname": "cpu", "host": "a", "severity": "warning"}
    inh.firing("src", {"alertname": "cpu", "host": "a", "severity": "critical"})
    assert inh.inhibited(warn, "tgt")
    inh.resolved("src")
    assert not inh.inhibited(warn, "tgt")
    inh.resolved("never-seen")  # harmless
    inh.firing("src", {"alertname": "cpu", "host": "a", "severity": "critical"})
    inh.firing("src", {"alertname": "cpu", "host": "b", "severity": "critical"})  # moved
    assert not inh.inhibited(warn, "tgt")
    inh.set_firing({"s2": {"alertname": "cpu", "host": "a", "severity": "critical"}})
    assert inh.inhibited_by(warn, "tgt") == ["s2"]


def test_never_inhibits_itself() -> None:
    rule = InhibitRule(source_matchers=('a="1"',), target_matchers=('a="1"',), equal=())
    inh = Inhibitor([rule])
    inh.firing("x", {"a": "1"})
    assert not inh.inhibited({"a": "1"}, "x")
    assert not inh.inhibited({"a": "1"})  # without a fingerprint: identical labels
    # two alerts that each match both sides do not mute each other
    inh.firing("y", {"a": "1", "b": "2"})
    assert not inh.inhibited({"a": "1"}, "x")
    assert not inh.inhibited({"a": "1", "b": "2"}, "y")


def test_default_rule_same_series_same_group() -> None:
    inh = Inhibitor(DEFAULT_INHIBIT_RULES)
    series = {"host.name": "web-1"}
    crit = {
        **series,
        "alertname": "critical_cpu_usage",
        "severity": "critical",
        "alertgroup": "cpu",
    }
    warn = {**series, "alertname": "high_cpu_usage", "severity": "warning", "alertgroup": "cpu"}
    inh.firing("crit", crit)
    assert inh.inhibited_by(warn, "warn") == ["crit"]
    # another host, another alertgroup, or no alertgroup: not muted
    assert not inh.inhibited({**warn, "host.name": "web-2"}, "w2")
    assert not inh.inhibited({**warn, "alertgroup": "memory"}, "w3")
    other = {**series, "alertname": "high_disk_usage", "severity": "warning"}
    assert not inh.inhibited(other, "w4")
    # a critical without an alertgroup (service_down) mutes nothing
    inh.set_firing({"down": {**series, "alertname": "service_down", "severity": "critical"}})
    assert not inh.inhibited(other, "w4")
    assert not inh.inhibited(warn, "warn")


@pytest.mark.parametrize(
    ("table", "hint"),
    [
        ({"source_matchers": [], "target_matchers": ['a="b"']}, "at least one matcher"),
        ({"source_matchers": ['a="b"'], "target_matchers": ["a~b"]}, "expected one of"),
        ({"source_matchers": ['a="b"']}, "target_matchers"),
        ({"source_matchers": ['a="b"'], "target_matchers": ['a="c"'], "eqaul": []}, "eqaul"),
    ],
)
def test_invalid(table: dict[str, object], hint: str) -> None:
    with pytest.raises(ValidationError, match=hint):
        InhibitRule.model_validate(table)
