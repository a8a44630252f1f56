"""Rule definitions: validation errors (bad condition with rule name and position, bad
template, unknown severity), annotation templates, the eleven defaults evaluated against
aggregate output (synthetic, and the real `aggregate` processor fed by the `internal`
source and by filesystem gauges named as `system` emits them), and merging defaults with
user overrides and rules."""

from __future__ import annotations

import re
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from revopipe import HealthStatus
from revopipe.batch import Batch, MetricBatch, MetricBatchBuilder
from revopipe.events import MetricKind, Tags, make_tags
from revopipe.testing import make
from revopipe_plugins.aggregate.processor import AggregateProcessor
from revopipe_plugins.alerts.rule import (
    DEFAULT_RULES,
    RuleConfig,
    Template,
    TemplateError,
    default_rules,
    merge_rules,
)
from revopipe_plugins.alerts.rules import Snapshot, evaluate
from revopipe_plugins.internal.source import InternalSource


def rule(**kw: Any) -> RuleConfig:
    data: dict[str, Any] = {"name": "r", "expr": "last(cpu) > 1"}
    data.update(kw)
    return RuleConfig.model_validate(data)


def test_file_spelling_and_durations() -> None:
    r = rule(**{"for": "5m", "keep_firing_for": "30s", "escalate_after": "1h"})
    assert (r.for_, r.keep_firing_for, r.escalate_after) == (300.0, 30.0, 3600.0)
    assert r.severity == "warning" and r.enabled and r.repeat_interval == 4 * 3600
    assert r.model_dump(by_alias=True)["for"] == "300s"


def test_bad_condition_names_rule_line_and_column() -> None:
    with pytest.raises(ValidationError) as e:
        rule(name="disk_full", expr="last(disk) > 0.9\n  and last(mem) >> 3")
    text = str(e.value)
    assert "rule 'disk_full'" in text
    assert "line 2, column" in text


def test_bad_condition_position_is_exact() -> None:
    with pytest.raises(ValidationError) as e:
        rule(name="x", expr="last(cpu) > ")
    assert "line 1, column 13" in str(e.value)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ $valu }}", "unknown variable '$valu'"),
        ("{{ $value ", "unbalanced '{{'"),
        ("cpu }} high", "unbalanced '}}'"),
        ("{{ $value | upper }}", "unsupported pipe"),
        ('{{ $value | printf "%.2f %d" }}', "exactly one conversion"),
        ('{{ $value | printf "no conversion" }}', "exactly one conversion"),
        ('{{ $value | printf "%(x)s" }}', "exactly one conversion"),
        ('{{ $value | printf "%*d" }}', "exactly one conversion"),
        ('{{ $labels.host | printf "%.2f" }}', "is text"),
        ("{{ $labels.1bad }}", "bad label name"),
        ("{{ __import__('os') }}", "unknown variable"),
    ],
)
def test_bad_templates(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        Template(template)
    with pytest.raises(ValidationError, match=r"rule 'r': annotations.summary"):
        rule(annotations={"summary": template})


def test_template_error_column() -> None:
    with pytest.raises(TemplateError) as e:
        Template("cpu is {{ $nope }}")
    assert e.value.column == 8


def test_template_render() -> None:
    labels = {"http.route": "/users/{id}", "host": "a"}
    cases = [
        ("{{ $value }}", "0.25"),
        ("{{$value}}", "0.25"),
        ('{{ $value | printf "%.1f" }}', "0.2"),
        ('{{ $value | printf "%.0f%%" }}', "0%"),
        ("{{ $labels.http.route }} on {{ $labels.host }}", "/users/{id} on a"),
        ("[{{ $labels.missing }}]", "[]"),
        ("{{ $rule }}/{{ $severity }}", "r/warning"),
        ('{{ $labels.host | printf "<%-3s>" }}', "<a  >"),
        ("plain text", "plain text"),
    ]
    for source, expected in cases:
        assert Template(source).render(labels, 0.25, "r", "warning") == expected, source
    assert Template("{{ $value }}").render({}, 3.0) == "3"
    assert Template('{{ $value | printf "%d" }}').render({}, float("nan")) == "nan"


@given(st.text(alphabet="ab{}$ %|", max_size=20))
def test_templates_compile_or_fail_cleanly(source: str) -> None:
    try:
        t = Template(source)
    except TemplateError:
        return
    assert isinstance(t.render({"a": "b"}, 1.5), str)


def test_unknown_severity_and_keys() -> None:
    with pytest.raises(ValidationError, match="severity"):
        rule(severity="fatal")
    with pytest.raises(ValidationError, match="Extra inputs"):
        rule(cooldown="5m")
    with pytest.raises(ValidationError, match="repeat_interval must be above zero"):
        rule(repeat_interval="0s")
    with pytest.raises(ValidationError, match="duration"):
        rule(**{"for": "soon"})
    with pytest.raises(ValidationError, match="escalate_to is set but escalate_after is not"):
        rule(escalate_to=["pager"])


# --- defaults -------------------------------------------------------------------------

NAMES = [
    "high_cpu_usage",
    "critical_cpu_usage",
    "high_memory_usage",
    "critical_memory_usage",
    "high_disk_usage",
    "api_high_error_rate",
    "api_critical_error_rate",
    "slow_api_response",
    "service_down",
    "disk_predicted_full",
    "revopipe_unhealthy",
]


def test_default_rules_match_the_issue() -> None:
    rules = {r.name: r for r in default_rules()}
    assert list(rules) == NAMES
    table = {
        "high_cpu_usage": (300, "warning", 900),
        "critical_cpu_usage": (120, "critical", 600),
        "high_memory_usage": (300, "warning", 900),
        "critical_memory_usage": (120, "critical", 600),
        "high_disk_usage": (600, "warning", 900),
        "api_high_error_rate": (180, "warning", 900),
        "api_critical_error_rate": (60, "critical", 600),
        "slow_api_response": (300, "warning", 900),
        "service_down": (60, "critical", 600),
        "disk_predicted_full": (900, "warning", 3600),
        "revopipe_unhealthy": (120, "critical", 600),
    }
    for name, (for_, severity, cooldown) in table.items():
        r = rules[name]
        assert (r.for_, r.severity, r.repeat_interval) == (for_, severity, cooldown), name
    assert rules["critical_cpu_usage"].escalate_after == 900
    assert [r.escalate_after for r in rules.values()].count(None) == 10


H = "http.server.request.duration"


def firing(snapshot: Snapshot) -> dict[str, list[dict[str, str]]]:
    out = {}
    for r in default_rules():
        got = evaluate(r.condition, snapshot)
        if got:
            out[r.name] = [dict(t) for t in got]
    return out


def row(name: str, value: float, **tags: str) -> tuple[tuple[str, Any], float]:
    return (name, make_tags(tags)), value


def test_defaults_over_system_metrics() -> None:
    snap = Snapshot(
        dict(
            [
                row("system.cpu.utilization.last", 0.90),
                # per-CPU and per-mode series must not trip the total CPU rules
                row("system.cpu.utilization.last", 0.99, **{"cpu.logical_number": "0"}),
                row("system.cpu.utilization.last", 0.97, **{"cpu.mode": "user"}),
                row("system.memory.utilization.last", 0.96, **{"system.memory.state": "used"}),
                row(
                    "system.filesystem.utilization.last",
                    0.86,
                    **{"system.filesystem.mountpoint": "/data", "system.device": "sdb1"},
                ),
                row(
                    "system.filesystem.utilization.last",
                    0.10,
                    **{"system.filesystem.mountpoint": "/", "system.device": "sda1"},
                ),
                row("process.running.last", 0, **{"process.executable.name": "nginx"}),
                row("process.running.last", 1, **{"process.executable.name": "redis"}),
            ]
        )
    )
    assert firing(snap) == {
        "high_cpu_usage": [{}],
        "high_memory_usage": [{"system.memory.state": "used"}],
        "critical_memory_usage": [{"system.memory.state": "used"}],
        "high_disk_usage": [{"system.device": "sdb1", "system.filesystem.mountpoint": "/data"}],
        "service_down": [{"process.executable.name": "nginx"}],
    }


def test_defaults_over_http_histograms() -> None:
    def route(r: str, status: str, count: float, total_s: float) -> list[Any]:
        tags = {"http.route": r, "http.request.method": "GET", "http.response.status_class": status}
        return [row(f"{H}.count", count, **tags), row(f"{H}.sum", total_s, **tags)]

    snap = Snapshot(
        dict(
            # /a: 10 % errors, mean (90*1 + 10*4) / 100 = 1.3 s
            route("/a", "2xx", 90, 90.0)
            + route("/a", "5xx", 10, 40.0)
            # /b: 20 % errors, mean (80*2 + 20*3) / 100 = 2.2 s
            + route("/b", "2xx", 80, 160.0)
            + route("/b", "5xx", 20, 60.0)
            # /c: no errors, fast
            + route("/c", "2xx", 50, 5.0)
        )
    )
    a = {"http.route": "/a", "http.request.method": "GET"}
    b = {"http.route": "/b", "http.request.method": "GET"}
    assert firing(snap) == {
        "api_high_error_rate": [a, b],
        "api_critical_error_rate": [b],
        "slow_api_response": [b],
    }


def test_defaults_are_data_and_templates_render() -> None:
    assert len(DEFAULT_RULES) == 11
    slow = {r.name: r for r in default_rules()}["slow_api_response"]
    text = slow.render_annotations({"http.route": "/b", "http.request.method": "GET"}, 2.2)
    assert text == {"summary": "GET /b: mean response time 2.20s"}


# --- merging ----------------------------------------------------------------------------


def test_merge_override_and_disable() -> None:
    merged = merge_rules(
        overrides={
            "high_cpu_usage": {"for": "10m", "labels": {"team": "infra"}},
            "critical_cpu_usage": {"escalate_to": ["ops-lead"]},
            "service_down": {"enabled": False},
        },
        rules=[{"name": "queue_backlog", "expr": "last(queue.depth) > 1000", "for": "2m"}],
    )
    by_name = {r.name: r for r in merged}
    assert list(by_name) == [n for n in NAMES if n != "service_down"] + ["queue_backlog"]
    cpu = by_name["high_cpu_usage"]
    assert cpu.for_ == 600 and cpu.labels == {"team": "infra"}
    assert cpu.severity == "warning" and cpu.repeat_interval == 900  # untouched keys kept
    assert by_name["critical_cpu_usage"].escalate_to == ["ops-lead"]
    assert by_name["queue_backlog"].for_ == 120


def test_merge_defaults_untouched() -> None:
    assert [r.name for r in merge_rules()] == NAMES
    assert merge_rules(defaults=[]) == []


def test_merge_errors() -> None:
    with pytest.raises(ValueError, match="no default rule 'high_cpu' to override"):
        merge_rules(overrides={"high_cpu": {"for": "1m"}})
    with pytest.raises(ValueError, match="has the name of a default rule"):
        merge_rules(rules=[{"name": "service_down", "expr": "last(x) > 1"}])
    with pytest.raises(ValueError, match="has the name of another rule"):
        merge_rules(rules=[{"name": "q", "expr": "last(x) > 1"}] * 2)
    with pytest.raises(ValueError, match="cannot rename"):
        merge_rules(overrides={"service_down": {"name": "other"}})
    with pytest.raises(ValidationError, match=r"rule 'high_disk_usage'.*line 1, column"):
        merge_rules(overrides={"high_disk_usage": {"expr": "last(disk) >"}})
    with pytest.raises(ValidationError, match="severity"):
        merge_rules(overrides={"high_disk_usage": {"severity": "page"}})


# --- the two defaults beyond the issue's nine, through the real aggregate processor -----

S = 1_000_000_000
T0 = 1_800_000_000 * S


def _at(batch: Batch | MetricBatch, ts: int) -> MetricBatch:
    """The rows restamped, so windows do not depend on the wall clock."""
    m = batch.metrics if isinstance(batch, Batch) else batch
    return MetricBatch(m.names, m.kinds, m.values, m.units, array("q", [ts] * len(m)), m.tags)


async def _aggregated(tmp_path: Path, batches: list[MetricBatch], until: int) -> list[Batch]:
    """`aggregate` (10 s windows) over the batches; its output per closed window."""
    agg = make(AggregateProcessor, {"inputs": ["x"], "window": "10s", "grace": "0s"}, tmp_path)
    agg.clock = lambda: until
    await agg.start()
    out = []
    for b in batches:
        await agg.process(Batch(b))
        agg.clock = lambda ts=b.timestamps[0]: ts  # type: ignore[misc]
        closed = await agg.tick()
        if closed is not None:
            out.append(closed)
    agg.clock = lambda: until
    last = await agg.flush()
    if last is not None:
        out.append(last)
    await agg.stop()
    return out


@pytest.mark.anyio
async def test_revopipe_unhealthy_over_internal_metrics(tmp_path: Path) -> None:
    src = make(InternalSource, {}, tmp_path, name="ingest")
    await src.start()
    stats = src.context.stats
    batches = []
    # two reports per 10 s window. Window 1: healthy, nothing lost; window 2: events
    # dropped; window 3: failing
    for k, change in enumerate(["", "", "drop", "", "fail", ""]):
        if change == "drop":
            stats.dropped += 7
        if change == "fail":
            stats.errors += 1
            stats.set_health(HealthStatus.UNHEALTHY, "boom")
        batches.append(_at(src.collect(), T0 + k * 5 * S))
    await src.stop()
    windows = await _aggregated(tmp_path, batches, T0 + 60 * S)
    unhealthy = {r.name: r for r in default_rules()}["revopipe_unhealthy"]
    tags = make_tags(
        {"component": "ingest", "component.kind": "source", "component.type": "internal"}
    )
    got = [evaluate(unhealthy.condition, Snapshot.from_batches([w])) for w in windows]
    # the first sample is each counter's baseline: nothing lost in window 1
    assert got == [{}, {tags: 7.0}, {tags: 0.0}]
    text = unhealthy.render_annotations(dict(tags), 7.0)["summary"]
    assert text == "revopipe source ingest (internal) is failing or losing events"


def _fs(mount: str, device: str) -> Tags:
    return make_tags(
        {
            "system.device": device,
            "system.filesystem.mountpoint": mount,
            "system.filesystem.type": "ext4",
        }
    )


@pytest.mark.anyio
async def test_disk_predicted_full_over_aggregated_filesystem_gauges(tmp_path: Path) -> None:
    root, data = _fs("/", "sda1"), _fs("/data", "sdb1")
    batches = []
    # a sample every 10 s for 20 minutes: "/" fills at 20 %/h from 40 %, "/data" is
    # fuller (88 %) but steady
    for k in range(121):
        b = MetricBatchBuilder(default_ts=T0 + k * 10 * S)
        b.add(
            "system.filesystem.utilization", 0.4 + 0.2 * k * 10 / 3600, MetricKind.GAUGE, "1", root
        )
        b.add("system.filesystem.utilization", 0.88, MetricKind.GAUGE, "1", data)
        batches.append(b.build())
    windows = await _aggregated(tmp_path, batches, T0 + 1300 * S)
    rules = {r.name: r for r in default_rules()}
    snap = Snapshot()
    for w in windows:
        snap.update(w)
        predicted = evaluate(rules["disk_predicted_full"].condition, snap)
    assert set(predicted) == {root}
    # at 20 minutes: 0.4667 now, + 0.8 in 4 hours
    assert predicted[root] == pytest.approx(0.4 + 0.2 * 1200 / 3600 + 0.8, rel=1e-6)
    assert set(evaluate(rules["high_disk_usage"].condition, snap)) == {data}
    text = rules["disk_predicted_full"].render_annotations(dict(root), predicted[root])
    assert text == {
        "summary": "Disk / (sda1) predicted full within 4h",
        "description": "At the last hour's pace, utilization reaches 1.27 in 4 hours.",
    }
