from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from revopipe_plugins.optimizer.changepoint import (
    ChangePoint,
    _prefix_distance_sums,
    detect,
    split_statistics,
    time_to_threshold,
)


def brute_q(x: np.ndarray) -> np.ndarray:
    """q-hat from the full O(n^2) distance matrix, straight from Matteson & James (2014)."""
    n = x.size
    dist = np.abs(x[:, None] - x[None, :])
    out = np.full(n + 1, -np.inf)
    for tau in range(2, n - 1):
        n1, n2 = tau, n - tau
        cross = dist[:tau, tau:].sum()
        within_x = dist[:tau, :tau].sum() / 2
        within_y = dist[tau:, tau:].sum() / 2
        e = 2 * cross / (n1 * n2) - within_x / math.comb(n1, 2) - within_y / math.comb(n2, 2)
        out[tau] = n1 * n2 / n * e
    return out


def assert_close_stats(fast: np.ndarray, slow: np.ndarray, scale: float) -> None:
    assert fast.shape == slow.shape
    finite = np.isfinite(slow)
    assert np.array_equal(finite, np.isfinite(fast))
    tol = 1e-9 * max(scale, 1.0) * slow.size
    np.testing.assert_allclose(fast[finite], slow[finite], rtol=1e-9, atol=tol)


floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
# small integers make ties (the awkward case for rank-based sums) frequent
series = st.one_of(
    st.lists(floats, min_size=0, max_size=40),
    st.lists(st.integers(-3, 3).map(float), min_size=0, max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(series)
def test_fast_statistic_matches_brute_force(values: list[float]) -> None:
    x = np.array(values, dtype=np.float64)
    scale = float(np.abs(x).max()) if x.size else 1.0
    assert_close_stats(split_statistics(x), brute_q(x), scale)


@settings(max_examples=100, deadline=None)
@given(st.lists(series, min_size=1, max_size=5).filter(lambda rs: len({len(r) for r in rs}) == 1))
def test_prefix_distance_sums_per_row(rows: list[list[float]]) -> None:
    x = np.array(rows, dtype=np.float64).reshape(len(rows), -1)
    expected = np.array([[np.abs(r[k] - r[:k]).sum() for k in range(r.size)] for r in x]).reshape(
        x.shape
    )
    scale = float(np.abs(x).max()) if x.size else 1.0
    np.testing.assert_allclose(
        _prefix_distance_sums(x), expected, rtol=1e-9, atol=1e-9 * scale * max(x.shape[1], 1)
    )


def test_statistic_survives_a_large_offset() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    # the statistic is translation invariant; the fast sums must not lose it to rounding
    np.testing.assert_allclose(split_statistics(x + 1e9), split_statistics(x), atol=1e-4)


def shifted(n: int, shifts: dict[int, float], seed: int, noise: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, noise, size=n) + 10.0
    for at, delta in shifts.items():
        x[at:] += delta
    return x


def assert_found(found: list[ChangePoint], expected: list[int], n: int) -> None:
    tolerance = max(5, round(0.02 * n))
    got = [c.index for c in found]
    assert len(got) == len(expected), (got, expected)
    for g, e in zip(got, expected, strict=True):
        assert abs(g - e) <= tolerance, (got, expected)


@pytest.mark.parametrize(
    ("n", "shifts", "noise"),
    [
        (200, {100: 3.0}, 1.0),
        (300, {60: 2.0}, 1.0),
        (400, {130: 2.5, 270: -2.5}, 1.0),
        (600, {150: 1.5, 300: 1.5, 450: -2.0}, 1.0),
        (600, {200: 1.5, 400: 1.5}, 0.5),
        (1000, {250: 2.0, 600: 1.5, 800: -2.0}, 1.0),
    ],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_known_shifts_found_at_the_right_index(
    n: int, shifts: dict[int, float], noise: float, seed: int
) -> None:
    x = shifted(n, shifts, seed, noise)
    found = detect(x, seed=seed)
    assert_found(found, sorted(shifts), n)
    for c in found:
        assert 0 < c.p_value <= 0.01
        assert math.isclose(c.magnitude, (c.mean_after - c.mean_before) / abs(c.mean_before))


def test_means_are_those_of_the_neighbouring_segments() -> None:
    x = np.array([1.0] * 20 + [5.0] * 20 + [2.0] * 20)
    found = detect(x)
    assert [c.index for c in found] == [20, 40]
    assert (found[0].mean_before, found[0].mean_after) == (1.0, 5.0)
    assert (found[1].mean_before, found[1].mean_after) == (5.0, 2.0)
    assert found[0].magnitude == pytest.approx(4.0)
    assert found[1].magnitude == pytest.approx(-0.6)


def test_relative_change_from_zero_is_signed_infinity() -> None:
    found = detect([0.0] * 20 + [3.0] * 20)
    assert [c.index for c in found] == [20]
    assert found[0].magnitude == math.inf


def test_small_shift_buried_in_noise_is_not_reported() -> None:
    # 0.05 sigma over 100 points per side is far below what the test can see
    assert detect(shifted(200, {100: 0.05}, seed=4)) == []


def test_pure_noise_false_positive_rate() -> None:
    # The p-value is (1 + #permutations at least as extreme) / (1 + permutations), valid under
    # exchangeability, and a series only gets change points if the first test passes: so the
    # chance that a pure-noise series gets any change point is at most `pvalue`. Over 1000
    # series the count must be one a true rate of 1 % explains: a one-sided binomial test of
    # "rate <= 0.01" is not rejected at the 0.001 level (these seeds: 14 of 1000, p = 0.12).
    pvalue = 0.01
    hits = 0
    for seed in range(1000):
        x = np.random.default_rng(10_000 + seed).normal(size=100)
        hits += bool(detect(x, pvalue=pvalue, seed=seed))
    assert stats.binomtest(hits, 1000, pvalue, alternative="greater").pvalue > 0.001, hits


def test_pure_noise_with_a_looser_pvalue() -> None:
    hits = 0
    for seed in range(100):
        x = np.random.default_rng(20_000 + seed).standard_t(3, size=150)
        hits += bool(detect(x, pvalue=0.05, permutations=50, seed=seed))
    assert hits / 100 <= 3 * 0.05 + 0.01


def test_seed_makes_results_reproducible() -> None:
    x = shifted(300, {150: 0.6}, seed=5)
    assert detect(x, seed=7) == detect(x, seed=7)


def test_min_size_is_respected() -> None:
    x = np.array([0.0] * 3 + [10.0] * 50)
    assert all(5 <= c.index <= x.size - 5 for c in detect(x, min_size=5))
    found = detect(x, min_size=3)
    assert [c.index for c in found] == [3]


def test_short_and_constant_series_have_no_change_points() -> None:
    assert detect([]) == []
    assert detect([1.0] * 9) == []
    assert detect([4.0] * 500) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pvalue": 0.0}, "pvalue=0.0 must be in"),
        ({"pvalue": 1.5}, "pvalue=1.5 must be in"),
        ({"min_size": 1}, "min_size=1 must be >= 2"),
        (
            {"permutations": 50},
            "permutations=50 can never reach pvalue=0.01; use permutations >= 99 or a larger",
        ),
    ],
)
def test_bad_parameters_are_explained(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match="optimizer.changepoint: " + message):
        detect([1.0, 2.0, 3.0], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, float("nan"), 2.0], r"values\[1\] is nan; drop or fill"),
        ([1.0, 2.0, float("inf")], r"values\[2\] is inf"),
        ([[1.0, 2.0], [3.0, 4.0]], "must be a 1-D sequence"),
        ([1.0, "fast", 2.0], "values must be numbers .*convert them to floats"),
        ([[1.0], [2.0, 3.0]], "values must be numbers"),
    ],
)
def test_bad_values_are_explained(values: list[object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detect(values)  # type: ignore[arg-type]


def test_time_to_threshold_rising_and_falling() -> None:
    t = np.arange(10.0)
    # disk usage +2 per second, last value 18: 100 is reached 41 s after the last sample
    assert time_to_threshold(t, 2 * t, 100.0) == pytest.approx(41.0)
    # free space falling 3 per second from 90 at t=9 reaches 0 thirty seconds later
    assert time_to_threshold(t, 117 - 3 * t, 0.0) == pytest.approx(30.0)


def test_time_to_threshold_least_squares_through_noise() -> None:
    rng = np.random.default_rng(1)
    t = np.linspace(0, 100, 200)
    v = 5 + 0.5 * t + rng.normal(0, 0.5, t.size)
    got = time_to_threshold(t, v, 105.0)
    assert got is not None
    assert got == pytest.approx(100.0, abs=2.0)  # reaches 105 at t = 200


def test_time_to_threshold_none_when_not_heading_there() -> None:
    t = [0.0, 1.0, 2.0, 3.0]
    assert time_to_threshold(t, [5.0, 5.0, 5.0, 5.0], 10.0) is None  # flat
    assert time_to_threshold(t, [5.0, 4.0, 3.0, 2.0], 10.0) is None  # falling away
    assert time_to_threshold(t, [5.0, 6.0, 7.0, 8.0], 1.0) is None  # crossed before


def test_time_to_threshold_unsorted_times_count_from_the_latest() -> None:
    assert time_to_threshold([3.0, 0.0, 2.0, 1.0], [6.0, 0.0, 4.0, 2.0], 10.0) == pytest.approx(2)


@pytest.mark.parametrize(
    ("times", "values", "threshold", "message"),
    [
        ([0.0, 1.0], [1.0], 5.0, "times has 2 points but values has 1"),
        ([1.0], [1.0], 5.0, "at least 2 distinct times"),
        ([1.0, 1.0], [1.0, 2.0], 5.0, "at least 2 distinct times"),
        ([0.0, float("nan")], [1.0, 2.0], 5.0, r"times\[1\] is nan"),
        ([0.0, 1.0], [1.0, 2.0], float("inf"), "threshold=inf must be finite"),
    ],
)
def test_time_to_threshold_bad_input(
    times: list[float], values: list[float], threshold: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        time_to_threshold(times, values, threshold)
