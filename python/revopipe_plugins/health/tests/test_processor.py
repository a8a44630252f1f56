"""The `health` processor on its own: rules, staleness (on a clock the test moves), alert
mapping, the control action and config validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.components import ControlError
from revopipe.config import ConfigInvalid
from revopipe.config.load import load_dict
from revopipe.events import Alert, Health, HealthStatus, Severity, make_tags
from revopipe.testing import make
from revopipe_plugins.health.processor import HealthProcessor

pytestmark = pytest.mark.anyio

H, D, U = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rows(*items: tuple[str, float, dict[str, str]]) -> Batch:
    b = MetricBatchBuilder()
    for name, value, tags in items:
        b.add(name, value, tags=tags)
    return Batch(b.build())


async def processor(tmp_path: Path, clock: Clock, **config: Any) -> HealthProcessor:
    p = make(HealthProcessor, {"inputs": ["x"], **config}, tmp_path, name="health")
    p.clock = clock
    await p.start()
    return p


def state(p: HealthProcessor, name: str) -> tuple[HealthStatus | None, str]:
    svc = p.services[name]
    return svc.status, svc.reason


async def test_rules_staleness_and_reasons(tmp_path: Path) -> None:
    clock = Clock()
    p = await processor(
        tmp_path,
        clock,
        services=[
            {
                "name": "api",
                "match": {"job": "api"},
                "unhealthy_when": "value(up) == 0",
                "degraded_when": "value(latency) > 0.5",
                "stale_after": "30s",
            }
        ],
    )
    first = p.evaluate(clock())
    assert state(p, "api") == (D, "no data yet")
    assert first is not None
    assert [(e.subject, e.status) for e in first.events if isinstance(e, Health)] == [
        ("service:api", D)
    ]
    [gauge] = list(first.metrics)
    assert (gauge.name, gauge.value) == ("revopipe.service.health", 0.5)
    assert gauge.tags == (("service", "api"),)

    # rows of other jobs do not count as this service's data
    await p.process(rows(("up", 0.0, {"job": "db"})))
    clock.now += 1
    p.evaluate(clock())
    assert state(p, "api") == (D, "no data yet")

    batch = rows(("up", 1.0, {"job": "api", "instance": "h:1"}), ("latency", 0.1, {"job": "api"}))
    clock.now += 1
    out = await p.process(batch)
    assert isinstance(out, list) and out[0] is batch  # passed through unchanged
    assert state(p, "api") == (H, "")
    assert out[1].metrics.values[0] == 1.0

    clock.now += 1
    await p.process(rows(("latency", 0.9, {"job": "api"})))
    assert state(p, "api") == (D, 'degraded_when value(latency) > 0.5 holds for {job="api"}')

    clock.now += 1
    await p.process(rows(("up", 0.0, {"job": "api", "instance": "h:1"})))
    # the worse wins: unhealthy_when over degraded_when
    assert state(p, "api") == (
        U,
        'unhealthy_when value(up) == 0 holds for {instance="h:1", job="api"}',
    )
    since = p.services["api"].since

    # nothing new to say within evaluate_every: the batch alone passes
    lone = rows(("up", 0.0, {"job": "api", "instance": "h:1"}))
    assert await p.process(lone) is lone
    assert p.services["api"].since == since

    # no data for stale_after: unhealthy with that reason, whatever the last values were
    clock.now += 30
    out2 = await p.tick()
    assert state(p, "api") == (U, "no data for 30s")
    assert isinstance(out2, Batch)
    assert [e.reason for e in out2.events if isinstance(e, Health)] == ["no data for 30s"]

    # unchanged and the gauge not due: nothing
    clock.now += 1
    assert await p.tick() is None
    # gauge due again after report_every (10s by default), without an event
    clock.now += 10
    again = await p.tick()
    assert isinstance(again, Batch) and not again.events and len(again.metrics) == 1


async def test_a_service_that_never_reports_goes_unhealthy_after_stale_after(
    tmp_path: Path,
) -> None:
    clock = Clock()
    p = await processor(
        tmp_path, clock, services=[{"name": "ghost", "stale_after": "5s", "required": False}]
    )
    await p.tick()
    assert state(p, "ghost") == (D, "no data yet")
    clock.now += 5
    await p.tick()
    assert state(p, "ghost") == (U, "no data for 5s (none yet)")
    [entry] = p.health_entries()
    assert entry.subject == "service:ghost" and entry.kind == "service"
    assert entry.required is False and entry.status is U


async def test_firing_alerts_map_to_services_by_label_or_match(tmp_path: Path) -> None:
    clock = Clock()
    p = await processor(
        tmp_path,
        clock,
        services=[{"name": "api", "match": {"job": "api"}}, {"name": "db"}],
    )
    await p.process(rows(("up", 1.0, {"job": "api"})))
    assert state(p, "api") == (H, "") and state(p, "db") == (H, "")

    def alert(rule: str, state_: str, severity: Severity, **labels: str) -> Batch:
        return Batch.of([Alert(rule, state_, severity, f"{rule} summary", make_tags(labels))])

    clock.now += 1
    await p.process(alert("slow", "firing", Severity.WARNING, service="db"))
    assert state(p, "db") == (D, "alert slow firing (warning): slow summary")
    assert state(p, "api") == (H, "")

    clock.now += 1
    await p.process(alert("down", "firing", Severity.CRITICAL, job="api", instance="i"))
    assert state(p, "api") == (U, "alert down firing (critical): down summary")

    clock.now += 1
    await p.process(alert("noise", "firing", Severity.INFO, service="db"))
    await p.process(alert("down", "resolved", Severity.CRITICAL, job="api", instance="i"))
    await p.process(alert("slow", "resolved", Severity.WARNING, service="db"))
    clock.now += 1
    await p.tick()
    assert state(p, "api") == (H, "") and state(p, "db") == (H, "")


async def test_the_services_control_action(tmp_path: Path) -> None:
    clock = Clock()
    p = await processor(
        tmp_path, clock, services=[{"name": "api", "match": {"job": "api"}}, {"name": "db"}]
    )
    await p.process(rows(("up", 1.0, {"job": "api"})))
    listed = await p.control("services", {})
    assert [r["name"] for r in listed] == ["api", "db"]
    api = listed[0]
    assert api["status"] == "healthy" and api["match"] == {"job": "api"}
    assert api["last_seen_seconds_ago"] == 0 and api["series"] == 1 and api["required"] is True
    assert [r["name"] for r in await p.control("services", {"name": "db"})] == ["db"]
    with pytest.raises(ControlError, match="no service named 'nope'; services: api, db"):
        await p.control("services", {"name": "nope"})
    with pytest.raises(ControlError, match="unknown parameter"):
        await p.control("services", {"bogus": "1"})


# -- config ------------------------------------------------------------------------------


def config(services: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "sources": {"gen": {"type": "generate"}},
        "processors": {"health": {"type": "health", "inputs": ["gen"], "services": services}},
        "sinks": {"hole": {"type": "blackhole", "inputs": ["health"]}},
    }


def test_a_bad_rule_expression_names_the_service_key_and_position() -> None:
    with pytest.raises(ConfigInvalid) as info:
        load_dict(config([{"name": "api", "unhealthy_when": "value(up) == "}]))
    text = str(info.value)
    assert "processors.health" in text and "services.0" in text
    assert "rule 'api.unhealthy_when'" in text
    assert "line 1, column 14" in text

    with pytest.raises(ConfigInvalid) as info:
        load_dict(config([{"name": "api", "degraded_when": "vlue(up) > 1"}]))
    text = str(info.value)
    assert "rule 'api.degraded_when'" in text and "line 1, column 1" in text


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        ([], "services"),
        ([{"name": "a"}, {"name": "a"}], "service 'a' is declared twice"),
        ([{"name": "a", "stale_after": "0s"}], "stale_after"),
        ([{"name": "a", "unknown_key": 1}], "unknown_key"),
    ],
)
def test_config_errors(services: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(ConfigInvalid, match=expected):
        load_dict(config(services))


def test_a_valid_config_loads() -> None:
    spec = load_dict(
        config(
            [
                {
                    "name": "api",
                    "match": {"job": "api"},
                    "unhealthy_when": "value(up) == 0",
                    "degraded_when": 'error_ratio(http.requests{status=~"5.."}, http.requests)'
                    " > 0.05",
                    "required": False,
                }
            ]
        )
    )
    assert spec.components["health"].config.type == "health"
