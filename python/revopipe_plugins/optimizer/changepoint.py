"""Change-point detection (E-divisive means) and linear time-to-threshold forecasts.

E-divisive (Matteson & James 2014, as used by MongoDB's ``signal_processing_algorithms`` and
Datastax's Hunter): find the split ``tau`` of a segment that maximises the energy-distance
statistic q-hat (alpha = 1), keep it only if a permutation test says it is significant, then
repeat on the segments until the best remaining split is not significant.

The classic implementations build the O(n^2) pairwise distance matrix (800 MB for 10 000
points). In one dimension every sum of ``|x_i - x_j|`` over ranges follows from
``D[k] = sum_{i<k} |x_k - x_i|`` (distance of each point to all points before it) plus sorted
prefix sums, and ``D`` is a weighted inversion count: a merge sort over log2(n) levels, each
a few vectorised O(n) numpy passes. So q-hat for every split of an n-point segment
costs O(n log n) time and O(n) memory, and a whole detection
O((k + 1) * permutations * n log n) for k change points (the last, failing round usually
stops after a few permutations, see ``_permutation_p_value``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ChangePoint", "detect", "split_statistics", "time_to_threshold"]

FloatArray = npt.NDArray[np.float64]

# Elements handed to one vectorised statistic call: bounds the working memory (~ 30 arrays of
# this many floats) while keeping the per-call Python overhead negligible.
_CHUNK_ELEMENTS = 262_144


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """A significant shift: ``values[index]`` is the first point of the new regime.

    ``mean_before``/``mean_after`` are the means of the neighbouring segments (bounded by the
    other change points), ``magnitude`` is the relative change ``(after - before) / |before|``
    (``±inf`` when ``mean_before`` is 0 and the means differ).
    """

    index: int
    p_value: float
    mean_before: float
    mean_after: float
    magnitude: float


def _prefix_distance_sums(rows: FloatArray) -> FloatArray:
    """``out[r, k] = sum_{i<k} |rows[r, k] - rows[r, i]|`` for each row, in O(m log m) per row.

    A merge sort run backwards: start from each row sorted by value, and at each level split
    every block of ``width`` columns into its two halves, stably (each half stays sorted by
    value). Each pair ``i < k`` is split across the halves of exactly one block at one level;
    walking that block in value order, a right-half point gets the number and the sum of the
    smaller left-half points as exclusive prefix sums. One sort in all, then a few O(m) numpy
    passes per level. Ties may land on either side: their distance is 0 either way.
    """
    n_rows, m = rows.shape
    positions = np.arange(m, dtype=np.int64)
    row_offset = (np.arange(n_rows, dtype=np.int64) * m)[:, np.newaxis]
    # order[r, p]: the column found at position p once each block is sorted by value; blocks
    # cover the same positions as columns, so a block starts at p - p % width
    order = np.argsort(rows, axis=1, kind="stable").astype(np.int64)
    less_count = np.zeros(n_rows * m)
    less_sum = np.zeros(n_rows * m)
    width = 1 << max(0, (m - 1).bit_length())
    while width > 1:
        half = width // 2
        starts = positions - positions % width
        is_left = (order // half) % 2 == 0
        left_values = np.where(is_left, np.take_along_axis(rows, order, axis=1), 0.0)
        left_before = np.cumsum(is_left, axis=1) - is_left
        left_sum_before = np.cumsum(left_values, axis=1) - left_values
        count = left_before - left_before[:, starts]
        right = ~is_left
        flat = (order + row_offset)[right]
        less_count[flat] += count[right]
        less_sum[flat] += (left_sum_before - left_sum_before[:, starts])[right]
        new_pos = starts + np.where(is_left, count, half + (positions - starts) - count)
        new_order = np.empty_like(order)
        np.put_along_axis(new_order, new_pos, order, axis=1)
        order = new_order
        width = half
    less_count2 = less_count.reshape(n_rows, m)
    less_sum2 = less_sum.reshape(n_rows, m)
    before_sum = np.cumsum(rows, axis=1) - rows
    greater_count = positions - less_count2
    greater_sum = before_sum - less_sum2
    out: FloatArray = rows * less_count2 - less_sum2 + greater_sum - rows * greater_count
    return out


def _total_distance_sums(rows: FloatArray) -> FloatArray:
    """``out[r, k] = sum_j |rows[r, k] - rows[r, j]|`` over the whole row, from sorted prefixes."""
    m = rows.shape[1]
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=1)
    prefix = np.cumsum(ordered, axis=1)
    total = prefix[:, -1:]
    pos = np.arange(m, dtype=np.float64)
    below = ordered * pos - (prefix - ordered)
    above = (total - prefix) - ordered * (m - 1 - pos)
    out = np.empty_like(rows)
    np.put_along_axis(out, order, below + above, axis=1)
    return out


def _split_statistics_rows(rows: FloatArray) -> FloatArray:
    """q-hat of every split ``tau`` (2 <= tau <= m-2) of each row; ``-inf`` elsewhere.

    Shape ``(n_rows, m + 1)``; column ``tau`` splits the row into ``[:tau]`` and ``[tau:]``.
    """
    n_rows, m = rows.shape
    stats = np.full((n_rows, m + 1), -np.inf)
    if m < 4:
        return stats
    # distances are translation invariant; centring keeps x_k * count products small, which
    # is what keeps the cancellations below exact enough for large offsets (e.g. 1e9 + noise)
    rows = rows - rows.mean(axis=1, keepdims=True)
    before = _prefix_distance_sums(rows)
    after = _total_distance_sums(rows) - before
    zero = np.zeros((n_rows, 1))
    within_left = np.concatenate((zero, np.cumsum(before, axis=1)), axis=1)
    cross = np.concatenate((zero, np.cumsum(after - before, axis=1)), axis=1)
    within_right = within_left[:, -1:] - within_left - cross
    n1 = np.arange(2, m - 1, dtype=np.float64)
    n2 = m - n1
    inner = slice(2, m - 1)
    e = (
        2.0 * cross[:, inner] / (n1 * n2)
        - 2.0 * within_left[:, inner] / (n1 * (n1 - 1.0))
        - 2.0 * within_right[:, inner] / (n2 * (n2 - 1.0))
    )
    stats[:, inner] = (n1 * n2 / m) * e
    return stats


def split_statistics(values: Sequence[float] | FloatArray) -> FloatArray:
    """q-hat (alpha = 1) for every split of ``values``: ``out[tau]`` compares ``values[:tau]``
    with ``values[tau:]``; ``-inf`` where a side has fewer than 2 points.

    ``q = n1 n2 / (n1 + n2) * (2/(n1 n2) sum|x-y| - C(n1,2)^-1 sum_{i<j}|x_i-x_j|
    - C(n2,2)^-1 sum_{i<j}|y_i-y_j|)``, as in Matteson & James (2014).
    """
    x = _as_series(values, "values")
    out: FloatArray = _split_statistics_rows(x[np.newaxis, :])[0]
    return out


def _as_series(values: Sequence[float] | FloatArray, what: str) -> FloatArray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"optimizer.changepoint: {what} must be numbers ({exc}); convert them to floats first"
        ) from exc
    if x.ndim != 1:
        raise ValueError(
            f"optimizer.changepoint: {what} must be a 1-D sequence of numbers, got shape "
            f"{x.shape}; pass one series at a time"
        )
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(
            f"optimizer.changepoint: {what}[{int(bad[0])}] is {x[bad[0]]}; drop or fill "
            "non-finite points before detection"
        )
    return x


def _best_split(segment: FloatArray, min_size: int) -> tuple[int, float]:
    stats = _split_statistics_rows(segment[np.newaxis, :])[0]
    valid = stats[min_size : segment.size - min_size + 1]
    best = int(np.argmax(valid))
    return best + min_size, float(valid[best])


def _permuted_max(
    segment: FloatArray, n_rows: int, min_size: int, rng: np.random.Generator
) -> FloatArray:
    """Best q-hat of ``n_rows`` random permutations of ``segment``."""
    m = segment.size
    out = np.empty(n_rows)
    per_call = max(1, _CHUNK_ELEMENTS // m)
    for start in range(0, n_rows, per_call):
        rows = min(per_call, n_rows - start)
        shuffled = rng.permuted(np.broadcast_to(segment, (rows, m)), axis=1)
        stats = _split_statistics_rows(shuffled)
        out[start : start + rows] = stats[:, min_size : m - min_size + 1].max(axis=1)
    return out


def _permutation_p_value(
    segments: list[FloatArray],
    observed: float,
    permutations: int,
    pvalue: float,
    min_size: int,
    rng: np.random.Generator,
) -> float:
    """``(1 + #{permuted max >= observed}) / (1 + permutations)``, or 1.0 once it cannot be
    <= ``pvalue`` any more.

    Each permutation shuffles every segment on its own and takes the best split over all of
    them, as the candidate was the best over all segments. The +1 makes the p-value valid
    (P(p <= a) <= a under no change). Stopping at the first hopeless count skips most of the
    work of the final, non-significant round; kept change points always get all permutations.
    """
    allowed = math.floor(pvalue * (permutations + 1) + 1e-9) - 1
    exceed = 0
    done = 0
    batch = 1
    eligible = [s for s in segments if s.size >= 2 * min_size]
    while done < permutations:
        rows = min(batch, permutations - done)
        best = np.full(rows, -np.inf)
        for segment in eligible:
            np.maximum(best, _permuted_max(segment, rows, min_size, rng), out=best)
        exceed += int(np.count_nonzero(best >= observed))
        done += rows
        if exceed > allowed:
            return 1.0
        # doubling batches: a hopeless candidate is dropped after a few permutations, a real
        # one soon runs in large vectorised batches
        batch *= 2
    return (exceed + 1) / (permutations + 1)


def detect(
    values: Sequence[float] | FloatArray,
    *,
    pvalue: float = 0.01,
    permutations: int = 100,
    min_size: int = 5,
    seed: int | None = 0,
) -> list[ChangePoint]:
    """Change points of ``values`` by E-divisive means, sorted by index.

    A split is kept when its permutation-test p-value is <= ``pvalue``; with no real change the
    chance that a series gets any change point is at most ``pvalue`` (the first test decides).
    Each segment keeps at least ``min_size`` points. ``seed`` makes the permutations, so the
    result, reproducible (``None``: fresh entropy).
    """
    x = _as_series(values, "values")
    if not 0.0 < pvalue < 1.0:
        raise ValueError(f"optimizer.changepoint: pvalue={pvalue} must be in (0, 1), e.g. 0.01")
    if min_size < 2:
        raise ValueError(
            f"optimizer.changepoint: min_size={min_size} must be >= 2 (q-hat needs two points "
            "on each side)"
        )
    needed = math.ceil(1.0 / pvalue - 1.0 - 1e-9)
    if permutations < needed:
        raise ValueError(
            f"optimizer.changepoint: permutations={permutations} can never reach "
            f"pvalue={pvalue}; use permutations >= {needed} or a larger pvalue"
        )
    rng = np.random.default_rng(seed)
    bounds = [0, x.size]
    p_values: dict[int, float] = {}
    best_in: dict[tuple[int, int], tuple[int, float]] = {}
    while True:
        windows = list(itertools.pairwise(bounds))
        candidates = []
        for a, b in windows:
            if b - a < 2 * min_size:
                continue
            if (a, b) not in best_in:
                tau, stat = _best_split(x[a:b], min_size)
                best_in[(a, b)] = (a + tau, stat)
            candidates.append(best_in[(a, b)])
        if not candidates:
            break
        index, stat = max(candidates, key=lambda c: c[1])
        p = _permutation_p_value(
            [x[a:b] for a, b in windows], stat, permutations, pvalue, min_size, rng
        )
        if p > pvalue:
            break
        p_values[index] = p
        bounds = sorted([*bounds, index])
    result = []
    for i in range(1, len(bounds) - 1):
        before = float(x[bounds[i - 1] : bounds[i]].mean())
        after = float(x[bounds[i] : bounds[i + 1]].mean())
        result.append(
            ChangePoint(
                index=bounds[i],
                p_value=p_values[bounds[i]],
                mean_before=before,
                mean_after=after,
                magnitude=_relative_change(before, after),
            )
        )
    return result


def _relative_change(before: float, after: float) -> float:
    if before != 0.0:
        return (after - before) / abs(before)
    if after == before:
        return 0.0
    return math.copysign(math.inf, after - before)


def time_to_threshold(
    times: Sequence[float] | FloatArray,
    values: Sequence[float] | FloatArray,
    threshold: float,
) -> float | None:
    """Time from the last sample until a least-squares line through ``(times, values)`` reaches
    ``threshold`` (like PromQL ``predict_linear`` solved for the time), in ``times`` units.

    ``None`` when the line never reaches it after the last sample: flat, or heading away. A
    line that crossed before the last sample is also ``None`` (it is moving further beyond);
    compare the current value with the threshold to tell a breach from a safe margin.
    """
    t = _as_series(times, "times")
    v = _as_series(values, "values")
    if t.size != v.size:
        raise ValueError(
            f"optimizer.changepoint: times has {t.size} points but values has {v.size}; pass "
            "one time per value"
        )
    if t.size < 2 or np.ptp(t) == 0.0:
        raise ValueError(
            "optimizer.changepoint: time_to_threshold needs at least 2 distinct times to fit "
            "a trend"
        )
    if not math.isfinite(threshold):
        raise ValueError(f"optimizer.changepoint: threshold={threshold} must be finite")
    t0 = float(t.mean())
    dt = t - t0
    slope = float(np.dot(dt, v - v.mean()) / np.dot(dt, dt))
    if slope == 0.0 or not math.isfinite(slope):
        return None
    at_last = float(v.mean()) + slope * (float(t.max()) - t0)
    remaining = (threshold - at_last) / slope
    return remaining if remaining >= 0.0 else None
