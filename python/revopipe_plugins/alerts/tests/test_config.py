"""`revopipe validate` on alerting configs: every mistake named with its rule, channel or
route position and a fix, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

HEAD = """
[sources.in]
type = "http"
address = "127.0.0.1:0"

[sinks.out]
type = "blackhole"
inputs = ["alerts"]

[processors.alerts]
type = "alerts"
inputs = ["in"]
"""

WEBHOOK = """
[processors.alerts.channels.team]
type = "webhook"
url = "http://127.0.0.1:9/alerts"
"""


def validate(tmp_path: Path, body: str, files: dict[str, str] | None = None) -> str:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "pipeline.toml"
    path.write_text(HEAD + body)
    done = run_cli("validate", str(path), cwd=tmp_path)
    return done.stdout + done.stderr if done.returncode else ""


def test_a_valid_config_with_defaults_channels_and_routes(tmp_path: Path) -> None:
    body = (
        WEBHOOK
        + """
[processors.alerts.channels.pager]
type = "pagerduty"
routing_key = "abc"

[processors.alerts.defaults.high_cpu_usage]
for = "10m"
[processors.alerts.defaults.high_disk_usage]
enabled = false

[[processors.alerts.rules]]
name = "queue_high"
expr = "value(queue.depth) > 10"
escalate_after = "15m"
escalate_to = ["pager"]

[processors.alerts.route]
channel = "team"
[[processors.alerts.route.routes]]
matchers = ['severity="critical"']
channel = "pager"
continue = true
"""
    )
    assert validate(tmp_path, body) == ""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[[processors.alerts.rules]]\nname = "queue_high"\nexpr = "value(q) >> 10"\n',
            ["processors.alerts.rules.0", "rule 'queue_high'", "line 1, column 11"],
        ),
        (
            '[[processors.alerts.rules]]\nname = "q"\nexpr = "value(q) > 1"\n'
            'annotations.summary = "{{ $value | printf }}"\n',
            ["rule 'q'", "annotations.summary"],
        ),
        (
            '[processors.alerts.channels.team]\ntype = "webhok"\nurl = "http://x"\n',
            ["channels.team", "did you mean 'webhook'", "known channel types"],
        ),
        (
            '[processors.alerts.channels.team]\ntype = "webhook"\n',
            ["channels.team (webhook)", "url"],
        ),
        (
            WEBHOOK + '[processors.alerts.route]\nchannel = "teem"\n',
            ["route.channel", "unknown channel 'teem'", "team"],
        ),
        (
            WEBHOOK + '[processors.alerts.route]\nchannel = "team"\n'
            '[[processors.alerts.route.routes]]\nmatchers = ["severity=~\\"(\\""]\n',
            ["invalid regular expression"],
        ),
        (
            "[processors.alerts.defaults.high_cpu]\nenabled = false\n",
            ["no default rule 'high_cpu' to override", "high_cpu_usage"],
        ),
        (
            WEBHOOK + '[[processors.alerts.rules]]\nname = "q"\nexpr = "value(q) > 1"\n'
            'escalate_after = "5m"\nescalate_to = ["oncall"]\n',
            ["escalate_to names channel 'oncall'"],
        ),
        (
            WEBHOOK
            + '[processors.alerts.channels.other]\ntype = "webhook"\nurl = "http://127.0.0.1:9"\n',
            ["2 channels", "no route"],
        ),
        (
            'rules_file = "missing.toml"\n',
            ["rules_file", "missing.toml"],
        ),
    ],
    ids=[
        "rule syntax",
        "template",
        "channel type",
        "channel key",
        "route channel",
        "route matcher",
        "unknown default",
        "escalation channel",
        "two channels no route",
        "rules file missing",
    ],
)
def test_mistakes_are_named(tmp_path: Path, body: str, expected: list[str]) -> None:
    out = validate(tmp_path, body)
    for text in expected:
        assert text in out, out


def test_rules_file_is_read_and_its_errors_name_the_rule(tmp_path: Path) -> None:
    good = '[[rules]]\nname = "from_file"\nexpr = "value(q) > 1"\n'
    assert validate(tmp_path, 'rules_file = "rules.toml"\n', {"rules.toml": good}) == ""
    bad = '[[rules]]\nname = "from_file"\nexpr = "p99(q) >"\n'
    out = validate(tmp_path, 'rules_file = "rules.toml"\n', {"rules.toml": bad})
    assert "rule 'from_file'" in out and "column" in out, out
