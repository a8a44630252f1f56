"""`_core.hdr_bucket_counts`: fixed cumulative buckets out of an HDR snapshot, as the
Prometheus and OTLP exporters need them."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe import _core

WINDOW = 10**9


def snapshot_of(values: list[int]) -> tuple[str, float]:
    agg = _core.Aggregator(WINDOW)
    agg.ingest_values("v", "By", (), array("d", values), 0)
    (w,) = agg.flush(0, force=True)
    assert w["hdr"] is not None
    return w["hdr"], w["resolution"]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 2047), min_size=1, max_size=200),
    bounds=st.lists(st.integers(0, 3000), min_size=1, max_size=12, unique=True),
)
def test_exact_where_every_integer_has_its_own_bucket(values, bounds):
    # unit "By" records whole bytes; below 2048 a 3-digit HDR keeps each integer apart
    hdr, resolution = snapshot_of(values)
    bounds = sorted(bounds)
    got = _core.hdr_bucket_counts(hdr, resolution, [float(b) for b in bounds])
    assert got == [sum(v <= b for v in values) for b in bounds]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 10**9), min_size=1, max_size=200),
    bounds=st.lists(st.integers(1, 10**9), min_size=1, max_size=12, unique=True),
)
def test_within_precision_elsewhere(values, bounds):
    hdr, resolution = snapshot_of(values)
    bounds = sorted(bounds)
    got = _core.hdr_bucket_counts(hdr, resolution, [float(b) for b in bounds])
    for b, n in zip(bounds, got, strict=True):
        # every value at or below the bound is counted; above it only within 0.1 %
        assert sum(v <= b for v in values) <= n <= sum(v <= b * 1.001 + 1 for v in values)
    assert got == sorted(got)


def test_bad_arguments_are_value_errors():
    hdr, resolution = snapshot_of([1, 2, 3])
    with pytest.raises(ValueError, match="ascending"):
        _core.hdr_bucket_counts(hdr, resolution, [2.0, 1.0])
    with pytest.raises(ValueError, match="ascending"):
        _core.hdr_bucket_counts(hdr, resolution, [1.0, float("nan")])
    with pytest.raises(ValueError, match="resolution"):
        _core.hdr_bucket_counts(hdr, 0.0, [1.0])
    with pytest.raises(ValueError, match="hdr_bucket_counts"):
        _core.hdr_bucket_counts("not base64!", resolution, [1.0])
    assert _core.hdr_bucket_counts(hdr, resolution, []) == []
