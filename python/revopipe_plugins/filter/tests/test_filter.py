import fnmatch
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe import Batch, Health, HealthStatus, Metric
from revopipe.events import make_tags
from revopipe.testing import make
from revopipe_plugins.filter.processor import FilterProcessor

NAMES = [
    "system.cpu.utilization",
    "system.memory.usage",
    "process.cpu.utilization",
    "app.requests",
    "system.cpu.load_average.1m",
]
GLOBS = ["system.*", "*.cpu.*", "process.*", "app.request?", "system.cpu.[lu]*", "nope"]


def reference(
    metrics: list[Metric], include: list[str], exclude: list[str], tags: dict[str, str]
) -> list[Metric]:
    out = []
    for m in metrics:
        d = dict(m.tags)
        if include and not any(fnmatch.fnmatchcase(m.name, g) for g in include):
            continue
        if any(fnmatch.fnmatchcase(m.name, g) for g in exclude):
            continue
        if not all(k in d and fnmatch.fnmatchcase(d[k], v) for k, v in tags.items()):
            continue
        out.append(m)
    return out


metric = st.builds(
    Metric,
    name=st.sampled_from(NAMES),
    value=st.floats(allow_nan=False),
    timestamp=st.integers(0, 2**62),
    tags=st.dictionaries(
        st.sampled_from(["cpu", "device"]), st.sampled_from(["0", "1", "sda"]), max_size=2
    ).map(make_tags),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(metric, max_size=30),
    st.lists(st.sampled_from(GLOBS), max_size=2),
    st.lists(st.sampled_from(GLOBS), max_size=2),
    st.dictionaries(
        st.sampled_from(["cpu", "device"]), st.sampled_from(["0", "*", "s?a"]), max_size=1
    ),
)
def test_matches_reference(
    metrics: list[Metric], include: list[str], exclude: list[str], tags: dict[str, str]
) -> None:
    proc = make(
        FilterProcessor,
        {"inputs": ["x"], "include": include, "exclude": exclude, "tags": tags},
        Path("/tmp"),
    )

    async def go() -> Batch | None:
        await proc.start()
        return await proc.process(Batch.of(metrics))

    out = anyio.run(go)
    expected = reference(metrics, include, exclude, tags)
    assert (list(out.metrics) if out else []) == expected


@pytest.mark.anyio
async def test_events_pass_unless_dropped(tmp_path: Path) -> None:
    batch = Batch.of([Metric("a", 1.0), Health("x", HealthStatus.HEALTHY)])
    keep = make(FilterProcessor, {"inputs": ["x"], "include": ["zzz"]}, tmp_path)
    await keep.start()
    out = await keep.process(batch)
    assert out is not None and len(out.metrics) == 0 and len(out.events) == 1
    drop = make(
        FilterProcessor, {"inputs": ["x"], "include": ["zzz"], "drop_events": True}, tmp_path
    )
    await drop.start()
    assert await drop.process(batch) is None
