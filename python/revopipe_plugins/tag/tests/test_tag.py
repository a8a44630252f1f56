from pathlib import Path

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe import Batch, Metric
from revopipe.events import Tags, make_tags
from revopipe.testing import make
from revopipe_plugins.tag.processor import TagProcessor

KEYS = st.sampled_from(["a", "b", "c", "d"])


def reference(
    tags: Tags, add: dict[str, str], remove: list[str], rename: dict[str, str], overwrite: bool
) -> Tags:
    d = dict(tags)
    for k in remove:
        d.pop(k, None)
    renamed: dict[str, str] = {}
    for k, v in d.items():
        renamed[rename.get(k, k)] = v
    for k, v in add.items():
        if overwrite or k not in renamed:
            renamed[k] = v
    return make_tags(renamed)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.dictionaries(KEYS, st.sampled_from(["1", "2"]), max_size=3), max_size=20),
    st.dictionaries(KEYS, st.sampled_from(["x", "y"]), max_size=2),
    st.lists(KEYS, max_size=2),
    st.dictionaries(KEYS, st.sampled_from(["e", "f"]), max_size=1),
    st.booleans(),
)
def test_matches_reference(
    tag_sets: list[dict[str, str]],
    add: dict[str, str],
    remove: list[str],
    rename: dict[str, str],
    overwrite: bool,
) -> None:
    metrics = [Metric("m", float(i), tags=make_tags(t)) for i, t in enumerate(tag_sets)]
    proc = make(
        TagProcessor,
        {"inputs": ["x"], "add": add, "remove": remove, "rename": rename, "overwrite": overwrite},
        Path("/tmp"),
    )

    async def go() -> Batch:
        await proc.start()
        return await proc.process(Batch.of(metrics))

    out = anyio.run(go)
    assert list(out.metrics.tags) == [
        reference(m.tags, add, remove, rename, overwrite) for m in metrics
    ]
    assert list(out.metrics.values) == [m.value for m in metrics]
