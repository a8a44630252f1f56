from __future__ import annotations

import base64
import math
import random
import sqlite3
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe_plugins.loadtest.baseline import (
    Baseline,
    BaselineError,
    BaselineStore,
    Run,
    compare,
    hdr_b64,
    mann_whitney_buckets,
    per_second_rps,
    welch_t_test,
)


def summary_of(latencies: Sequence[float], seconds: float = 10.0) -> dict[str, Any]:
    """A generator-shaped summary; latency_hdr as the raw compressed V2 bytes the Rust
    generator emits (hdrh writes the same format: checked by hdr_bucket_counts below)."""
    hist = HdrHistogram(1, 3600 * 10**6, 3)
    for micros, count in Counter(max(1, round(v * 1e6)) for v in latencies).items():
        hist.record_value(micros, count)
    ordered = sorted(latencies)
    n = len(ordered)

    def q(p: float) -> float:
        return ordered[min(n - 1, int(p * n))] if n else 0.0

    return {
        "t": seconds,
        "interval": seconds,
        "requests": n,
        "ok": n,
        "errors": {"connect": 0, "timeout": 0, "status": 0, "read": 0},
        "bytes_received": 0,
        "target": 10.0,
        "active": 0,
        "dropped": 0,
        "latency_hdr": base64.b64decode(hist.encode()),
        "latency": {
            "min": q(0),
            "mean": statistics.fmean(ordered) if n else 0.0,
            "p50": q(0.5),
            "p90": q(0.9),
            "p95": q(0.95),
            "p99": q(0.99),
            "p99_9": q(0.999),
            "max": ordered[-1] if n else 0.0,
        },
        "status": {"200": n},
    }


def lognormal(rnd: random.Random, n: int, median: float = 0.010) -> list[float]:
    return [median * math.exp(rnd.gauss(0, 0.5)) for _ in range(n)]


def rps(rnd: random.Random, n: int, mean: float, sd: float) -> list[float]:
    return [rnd.gauss(mean, sd) for _ in range(n)]


def test_a_2x_latency_shift_is_flagged_regressed() -> None:
    rnd = random.Random(1)
    base = lognormal(rnd, 20_000)
    slow = [2 * v for v in lognormal(rnd, 20_000)]
    baseline = Run(summary_of(base), rps(rnd, 30, 1000, 30))
    current = Run(summary_of(slow), rps(rnd, 30, 1000, 30))
    result = compare(baseline, current)
    assert result.verdict == "regressed"
    assert result.latency.verdict == "regressed"
    assert result.latency.magnitude == "large" and result.latency.effect > 0.474
    assert result.latency.p_value < 1e-10
    assert 0.8 < result.latency.details["p50_change"] < 1.2
    assert result.throughput.verdict == "unchanged"
    # And the other way round.
    assert compare(current, baseline).latency.verdict == "improved"


def test_a_throughput_drop_is_flagged_regressed() -> None:
    rnd = random.Random(2)
    lat = summary_of(lognormal(rnd, 2000))
    result = compare(Run(lat, rps(rnd, 30, 1000, 30)), Run(lat, rps(rnd, 30, 800, 30)))
    assert result.latency.verdict == "unchanged" and result.latency.effect == 0
    assert result.throughput.verdict == "regressed"
    assert result.throughput.effect < -0.8 and result.throughput.magnitude == "large"
    assert result.verdict == "regressed"
    assert math.isclose(result.throughput.details["rps_change"], -0.2, abs_tol=0.03)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(0, 2**32))
def test_two_samples_of_one_distribution_are_unchanged(seed: int) -> None:
    rnd = random.Random(seed)
    a = Run(summary_of(lognormal(rnd, 10_000)), rps(rnd, 20, 1000, 40))
    b = Run(summary_of(lognormal(rnd, 10_000)), rps(rnd, 20, 1000, 40))
    result = compare(a, b)
    assert result.verdict == "unchanged"
    assert result.latency.magnitude == "negligible"


def test_a_small_but_significant_throughput_change_is_unchanged() -> None:
    rnd = random.Random(5)
    lat = summary_of([0.01])
    result = compare(Run(lat, rps(rnd, 60, 1000, 5)), Run(lat, rps(rnd, 60, 980, 5)))
    assert result.throughput.p_value < 1e-6 and result.throughput.magnitude == "large"
    assert result.throughput.verdict == "unchanged"
    strict = compare(
        Run(lat, rps(rnd, 60, 1000, 5)), Run(lat, rps(rnd, 60, 980, 5)), min_rps_change=0.01
    )
    assert strict.throughput.verdict == "regressed"


def test_the_welch_test_false_positive_rate_matches_alpha() -> None:
    rnd = random.Random(6)
    p_values = [
        welch_t_test(rps(rnd, 20, 1000, 40), rps(rnd, 25, 1000, 60)).p_value for _ in range(200)
    ]
    assert sum(p < 0.05 for p in p_values) <= 20
    assert sum(p < 0.5 for p in p_values) >= 80


def test_the_latency_test_false_positive_rate_matches_alpha() -> None:
    # Below the down-weighting cap the p-values of equal distributions are ~uniform.
    rnd = random.Random(3)
    p_values = []
    for _ in range(60):
        a = summary_of(lognormal(rnd, 1500))
        b = summary_of(lognormal(rnd, 1500))
        p_values.append(compare(Run(a, []), Run(b, [])).latency.p_value)
    assert sum(p < 0.05 for p in p_values) <= 8
    assert sum(p < 0.5 for p in p_values) >= 18


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 20), min_size=1, max_size=40),
    st.lists(st.integers(0, 20), min_size=1, max_size=40),
)
def test_mann_whitney_on_buckets_matches_pairs_and_ranks(xs: list[int], ys: list[int]) -> None:
    x = [float(xs.count(v)) for v in range(21)]
    y = [float(ys.count(v)) for v in range(21)]
    result = mann_whitney_buckets(x, y)
    greater = sum(1 for a in xs for b in ys if a > b)
    less = sum(1 for a in xs for b in ys if a < b)
    ties = len(xs) * len(ys) - greater - less
    assert math.isclose(result.u, greater + ties / 2)
    assert math.isclose(result.cliffs_delta, (greater - less) / (len(xs) * len(ys)))
    # The rank-sum form of U with midranks.
    pooled = sorted(xs + ys)
    midrank = {v: statistics.fmean(i + 1 for i, w in enumerate(pooled) if w == v) for v in pooled}
    r1 = sum(midrank[v] for v in xs)
    assert math.isclose(result.u, r1 - len(xs) * (len(xs) + 1) / 2)
    assert 0 <= result.p_value <= 1


def test_mann_whitney_normal_approximation_reference_value() -> None:
    # x = 0..9 against y = 5..14, one value per bucket: 10 pairs with x > y, 5 ties.
    x = [1.0] * 10 + [0.0] * 5
    y = [0.0] * 5 + [1.0] * 10
    assert mann_whitney_buckets(x, y).u == 10 + 5 / 2
    # Disjoint samples of 10: U = 0, mean 50, sd = sqrt(10 * 10 * 21 / 12), p = 0.0028.
    ref = mann_whitney_buckets([1.0] * 10 + [0.0] * 10, [0.0] * 10 + [1.0] * 10)
    assert ref.u == 0 and math.isclose(ref.z, (0 - 50 + 0.5) / math.sqrt(100 * 21 / 12))
    assert math.isclose(ref.p_value, math.erfc(abs(ref.z) / math.sqrt(2)))


def test_welch_reference_and_degenerate_samples() -> None:
    x = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    y = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    result = welch_t_test(x, y)
    # Wikipedia's Welch example 1: t = -2.46, df = 24.99, p = 0.021.
    assert math.isclose(result.t, -2.46, abs_tol=0.01)
    assert math.isclose(result.df, 24.99, abs_tol=0.01)
    assert math.isclose(result.p_value, 0.021, abs_tol=0.001)
    same = welch_t_test([5.0, 5.0], [5.0, 5.0])
    assert same.p_value == 1 and same.hedges_g == 0
    apart = welch_t_test([5.0, 5.0], [4.0, 4.0])
    assert apart.p_value == 0 and apart.hedges_g == math.inf
    with pytest.raises(ValueError, match="at least 2"):
        welch_t_test([1.0], [1.0, 2.0])


def test_too_little_data_is_unchanged_with_a_note() -> None:
    empty = summary_of([])
    full = summary_of([0.01, 0.02])
    result = compare(Run(empty, [1.0]), Run(full, [2.0]))
    assert result.verdict == "unchanged"
    assert "no completed requests" in result.latency.note
    assert "fewer than 2 seconds" in result.throughput.note


def test_per_second_rps_skips_a_short_final_interval() -> None:
    snaps = [{"interval": 1.0, "requests": 100}, {"interval": 1.0, "requests": 90}]
    assert per_second_rps([*snaps, {"interval": 0.2, "requests": 3}]) == [100.0, 90.0]
    assert per_second_rps([*snaps, {"interval": 0.5, "requests": 40}]) == [100.0, 90.0, 80.0]
    assert Run.from_snapshots({}, snaps).per_second_rps == [100.0, 90.0]


def test_hdr_payload_forms() -> None:
    raw = summary_of([0.001, 0.002])["latency_hdr"]
    text = base64.b64encode(raw).decode()
    assert hdr_b64(raw) == text and hdr_b64(text) == text and hdr_b64(text.encode()) == text
    with pytest.raises(BaselineError, match="neither a compressed"):
        hdr_b64(b"\xff\xfe")
    bad = {**summary_of([0.001]), "latency_hdr": "bm90IGFuIGhkcg=="}
    with pytest.raises(BaselineError, match="does not decode"):
        compare(Run(bad, []), Run(summary_of([0.001]), []))


def test_store_round_trip(tmp_path: Path) -> None:
    rnd = random.Random(4)
    summary = summary_of(lognormal(rnd, 500))
    with BaselineStore.for_data_dir(tmp_path) as store:
        saved = store.save("checkout", summary, [10.0, 11.5], {"url": "http://x", "users": 5})
        assert isinstance(saved, Baseline)
        assert store.load("missing") is None
        store.save("browse", summary_of([0.5]), [1.0])
    path = tmp_path / "loadtest" / "baselines.db"
    assert path.exists()
    with BaselineStore(path) as store:
        loaded = store.load("checkout")
        assert loaded is not None
        assert loaded.summary == summary and loaded.per_second_rps == [10.0, 11.5]
        assert loaded.meta == {"url": "http://x", "users": 5}
        assert loaded.created_ns == saved.created_ns
        assert [b.name for b in store.list()] == ["browse", "checkout"]
        # Saving again replaces.
        store.save("checkout", summary, [1.0, 2.0])
        again = store.load("checkout")
        assert again is not None and again.per_second_rps == [1.0, 2.0]
        assert compare(loaded, again).latency.effect == 0
        assert store.delete("browse") and not store.delete("browse")
        assert [b.name for b in store] == ["checkout"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_store_keeps_a_base64_text_hdr_as_text(tmp_path: Path) -> None:
    summary = summary_of([0.001, 0.003])
    summary["latency_hdr"] = base64.b64encode(summary["latency_hdr"]).decode()
    with BaselineStore(tmp_path / "b.db") as store:
        store.save("t", summary, [])
        loaded = store.load("t")
    assert loaded is not None and loaded.summary["latency_hdr"] == summary["latency_hdr"]


def test_store_refuses_bad_input(tmp_path: Path) -> None:
    with BaselineStore(tmp_path / "b.db") as store:
        with pytest.raises(BaselineError, match="non-empty name"):
            store.save(" ", summary_of([0.1]), [])
        with pytest.raises(BaselineError, match="lacks latency_hdr"):
            store.save("x", {"requests": 1}, [])
        with pytest.raises(BaselineError, match="must be JSON values"):
            store.save("x", summary_of([0.1]), [], {"when": object()})
        assert store.list() == []


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "baselines.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BaselineError, match=r"is not a baseline database.*move it away"):
        BaselineStore(path)
    assert path.read_bytes() == b"this is not sqlite" * 100


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "baselines.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(BaselineError, match="schema 99, newer"):
        BaselineStore(path)
