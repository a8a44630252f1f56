from pathlib import Path

import pytest

from revopipe import HealthStatus
from revopipe.testing import collect, make
from revopipe_plugins.internal.source import InternalSource

pytestmark = pytest.mark.anyio


async def test_reports_counters_health_and_transitions(tmp_path: Path) -> None:
    src = make(InternalSource, {"interval": "50ms"}, tmp_path, name="self")
    stats = src.context.stats
    stats.events_out = 42
    first = await collect(src, 0.08)
    values = {
        (n, dict(t).get("component")): v
        for n, t, v in zip(
            first[0].metrics.names, first[0].metrics.tags, first[0].metrics.values, strict=True
        )
    }
    assert values[("revopipe.component.events_out", "self")] == 42
    assert values[("revopipe.component.health", "self")] == 1.0
    assert first[0].events == ()
    assert ("process.memory.usage", None) in values

    stats.set_health(HealthStatus.UNHEALTHY, "boom")
    later = await collect(src, 0.08)
    assert [(e.subject, e.status, e.reason) for e in later[0].events] == [
        ("component:self", HealthStatus.UNHEALTHY, "boom")
    ]
