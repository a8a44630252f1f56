"""Batch round trips: metrics -> columns -> metrics, and columns -> JSON lines -> dicts."""

from __future__ import annotations

import json
import math
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revopipe import Batch, Health, HealthStatus, Metric, MetricBatch, MetricKind
from revopipe.encode import batch_jsonl
from revopipe.events import make_tags

text = st.text(max_size=12)
metrics = st.builds(
    Metric,
    name=text,
    value=st.floats(allow_nan=False, allow_infinity=False),
    kind=st.sampled_from(list(MetricKind)),
    unit=st.sampled_from(["1", "By", "s", "{process}", "ünït"]),
    timestamp=st.integers(-(2**63), 2**63 - 1),
    tags=st.dictionaries(text, text, max_size=3).map(make_tags),
)


@given(st.lists(metrics, max_size=40))
def test_columns_round_trip(ms: list[Metric]) -> None:
    batch = MetricBatch.from_metrics(ms)
    assert len(batch) == len(ms)
    assert list(batch) == ms
    assert MetricBatch.from_metrics(batch) == batch


@given(st.lists(metrics, max_size=40))
def test_jsonl_round_trip(ms: list[Metric]) -> None:
    batch = Batch.of([*ms, Health("x", HealthStatus.DEGRADED, "why")])
    data = batch_jsonl(batch)
    assert data.endswith(b"\n") and data.count(b"\n") == len(ms) + 1
    # split on "\n" only: str.splitlines() also breaks at U+0085 and U+2028, which JSON
    # strings may hold raw
    rows = [json.loads(line) for line in data.decode().split("\n")[:-1]]
    assert rows == list(batch.iter_dicts())


def test_non_finite_values_are_null_in_json() -> None:
    batch = Batch.of([Metric("a", math.nan), Metric("b", math.inf), Metric("c", -math.inf)])
    rows = [json.loads(line) for line in batch_jsonl(batch).splitlines()]
    assert [r["value"] for r in rows] == [None, None, None]


def test_select_and_with_tags_keep_other_columns() -> None:
    ms = [Metric("a", 1.0, tags=(("k", "1"),)), Metric("b", 2.0), Metric("c", 3.0)]
    batch = MetricBatch.from_metrics(ms)
    picked = batch.select([True, False, True])
    assert [m.name for m in picked] == ["a", "c"] and picked.values == array("d", [1.0, 3.0])
    retagged = batch.with_tags([(), (), (("z", "9"),)])
    assert [m.tags for m in retagged] == [(), (), (("z", "9"),)]
    assert retagged.names == batch.names


def test_mismatched_columns_are_refused() -> None:
    with pytest.raises(ValueError, match="columns differ"):
        MetricBatch(["a"], b"", array("d"), [], array("q"), [])


def test_batch_id_survives_replace() -> None:
    b = Batch.of([Metric("a", 1.0)])
    assert b.replace(events=()).id == b.id
    assert Batch().id != b.id
