"""Leak detection on a memory series: a steady upward trend, with a stated confidence.

A series is called *leaking* when all of these hold:

1. **Trend** (Mann-Kendall): the one-sided Mann-Kendall test for an increasing trend
   (Kendall's tau between time and value, ``scipy.stats.kendalltau``) has ``p < alpha``.
   Under stationary noise this flags at most ``alpha`` of series, whatever the noise
   distribution: the test uses ranks only.
2. **Size** (Theil-Sen): the median of pairwise slopes is positive and the growth it fits
   over the window (``slope * duration``) is at least ``min_growth``. Theil-Sen ignores up
   to ~29 % of outlying points, so a few spikes do not make or hide a slope.
3. **Spread** (floors of quarters): the window is cut into 4 equal-time quarters and each
   quarter's *floor* (its 10th percentile) is taken. Between consecutive quarters the floor
   must rise by at least a quarter of what the Theil-Sen line predicts (``slope * quarter``)
   in at least 2 of the 3 transitions.
4. **Not one jump**: a single step (two flat levels, best split by least squares) must not
   explain the data decisively better than the line: ``n * ln(RSS_line / RSS_step)`` (the
   log-likelihood ratio under Gaussian noise) must stay under ``3 * ln(n)``, a BIC-style
   penalty that also pays for searching the step's position.

Why rules 3 and 4: Mann-Kendall only asks whether later values tend to be larger than
earlier ones, so it also fires on shapes that are not leaks:

- *A single jump* (flat, jump, flat: a cache filled, a pool grew once) makes every
  before/after pair concordant. A one-step model fits it far better than a line (rule 4),
  and the floor rises across one quarter boundary only (rule 3) — one rule alone is not
  enough: a quarter holding the jump gets an in-between floor, and a line through a jump
  predicts so little per quarter that noise in the flat parts passes rule 3.
- *A sawtooth* (a garbage-collected working set grows, then drops back) makes the pairs
  inside each tooth concordant. But every quarter that holds whole teeth reaches the same
  post-collection trough, so the floors do not rise. This needs the window to span a few
  collection cycles (two or more per quarter); over a shorter window a growing tooth is
  indistinguishable from a leak. Nor may the collection period be a near-exact multiple
  of the sampling interval: sampled at the same phase drifting slowly, the teeth alias into
  a slow ramp.

A leak raises the floor everywhere: what was retained is never given back, so the lowest
values of each quarter are higher than those of the one before, and no single step
explains the growth. Floors (not means or maxima) are used because the retained memory is
what the troughs show; the 10th percentile rather than the minimum so that one low reading
does not move a floor.

Long series are reduced to at most 512 points (medians of equal-count chunks) first: that
bounds the O(n²) Theil-Sen cost and damps the short-range autocorrelation of densely
sampled memory readings, which would otherwise make Mann-Kendall over-confident.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["LeakVerdict", "assess", "format_quantity"]

FloatArray = npt.NDArray[np.float64]

SEGMENTS = 4
"""Equal-time pieces the window is cut into for the steadiness rule."""
FLOOR_QUANTILE = 0.10
"""The floor of a piece: low enough to be the post-collection trough, above a lone dip."""
MIN_RISE_SHARE = 0.25
"""A transition counts when the floor rises by this share of the line's per-piece growth."""
MIN_STEADY_TRANSITIONS = 2
"""Of the SEGMENTS - 1 transitions, how many must rise: more than one, so one jump is not
enough; not all, so one noisy quarter does not hide a real leak."""
STEP_PENALTY = 3.0
"""How many ln(n) a one-step fit must gain over a line (in n * ln(RSS ratio), the
log-likelihood ratio under Gaussian noise) to be called a jump: a BIC-style penalty that
also pays for searching the step's position among n - 1 places."""
MAX_POINTS = 512


@dataclass(frozen=True, slots=True)
class LeakVerdict:
    """The outcome of `assess`.

    ``slope`` is the Theil-Sen slope in value units per second; ``p_value`` the one-sided
    Mann-Kendall p for an increasing trend and ``confidence = 1 - p_value``; ``steadiness``
    the share (0..1) of quarter-to-quarter transitions whose floor rose as the line
    predicts; ``growth`` the fitted growth over the window (``slope * duration``);
    ``reason`` a sentence saying why.
    """

    leaking: bool
    slope: float
    p_value: float
    confidence: float
    steadiness: float
    growth: float
    reason: str


_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_quantity(value: float, unit: str = "By") -> str:
    """``1.2 MiB`` for bytes (unit ``By``), ``3.4`` for unit ``1``, ``3.4 {block}`` for any
    other unit."""
    if unit == "By":
        v = abs(value)
        i = 0
        while v >= 1024 and i < len(_BINARY) - 1:
            v /= 1024
            i += 1
        sign = "-" if value < 0 else ""
        return f"{sign}{v:.3g} {_BINARY[i]}"
    if unit in ("", "1"):  # a dimensionless count or ratio: a bare number reads best
        return f"{value:.3g}"
    return f"{value:.3g} {unit}"


def _rate(slope: float, duration: float, unit: str) -> str:
    """The slope per second, minute or hour, whichever suits the window length."""
    if duration >= 7200:
        return f"{format_quantity(slope * 3600, unit)}/h"
    if duration >= 120:
        return f"{format_quantity(slope * 60, unit)}/min"
    return f"{format_quantity(slope, unit)}/s"


def _as_arrays(times_s: Sequence[float], values: Sequence[float]) -> tuple[FloatArray, FloatArray]:
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.ndim != 1:
        raise ValueError("leak.assess: times_s and values must be flat sequences of numbers")
    if t.shape != v.shape:
        raise ValueError(
            f"leak.assess: times_s has {t.size} points but values has {v.size}; "
            "pass one time per value"
        )
    for name, arr in (("times_s", t), ("values", v)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"leak.assess: {name}[{i}] is {arr[i]!r}; every time and value must be a "
                "finite number (drop missing readings before calling)"
            )
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def _reduce(t: FloatArray, v: FloatArray) -> tuple[FloatArray, FloatArray]:
    """At most MAX_POINTS points: medians of consecutive equal-count chunks."""
    n = t.size
    if n <= MAX_POINTS:
        return t, v
    edges = np.linspace(0, n, MAX_POINTS + 1).astype(np.int64)
    tt = np.array([np.median(t[a:b]) for a, b in itertools.pairwise(edges)])
    vv = np.array([np.median(v[a:b]) for a, b in itertools.pairwise(edges)])
    return tt, vv


def _floors(t: FloatArray, v: FloatArray) -> list[float] | None:
    """The floor of each equal-time piece, or None when a piece has fewer than 2 points."""
    t0, t1 = float(t[0]), float(t[-1])
    bounds = np.linspace(t0, t1, SEGMENTS + 1)
    idx = np.searchsorted(t, bounds[1:-1], side="left")
    pieces = np.split(v, idx)
    if any(p.size < 2 for p in pieces):
        return None
    return [float(np.quantile(p, FLOOR_QUANTILE)) for p in pieces]


def _best_step(t: FloatArray, v: FloatArray) -> tuple[float, float, float]:
    """The best single step (two flat levels) by least squares: (time of the first point
    after it, height, residual sum of squares)."""
    n = v.size
    c1 = np.cumsum(v)
    c2 = np.cumsum(v * v)
    k = np.arange(1, n)  # points before the split
    left_sum, left_sq = c1[:-1], c2[:-1]
    right_sum, right_sq = c1[-1] - left_sum, c2[-1] - left_sq
    rss = (left_sq - left_sum**2 / k) + (right_sq - right_sum**2 / (n - k))
    i = int(np.argmin(rss))
    height = right_sum[i] / (n - k[i]) - left_sum[i] / k[i]
    return float(t[i + 1]), float(height), float(max(rss[i], 0.0))


def _line_rss(t: FloatArray, v: FloatArray) -> float:
    a, b = np.polyfit(t, v, 1)
    r = v - (a * t + b)
    return float(r @ r)


def _prefers_step(line_rss: float, step_rss: float, n: int) -> bool:
    """Whether one step explains the data decisively better than a line (see module doc)."""
    if step_rss <= 0.0:
        return line_rss > 0.0
    return n * math.log(max(line_rss, 1e-300) / step_rss) > STEP_PENALTY * math.log(n)


def assess(
    times_s: Sequence[float],
    values: Sequence[float],
    *,
    alpha: float = 0.01,
    min_points: int = 20,
    min_growth: float = 0.0,
    unit: str = "By",
) -> LeakVerdict:
    """Whether ``values`` (sampled at ``times_s``, seconds, any origin) grow steadily.

    ``alpha`` is the significance level of the trend test; fewer than ``min_points``
    readings are never called a leak; ``min_growth`` is the smallest fitted growth over the
    window (in value units) worth reporting; ``unit`` only words the reason (``By`` prints
    KiB/MiB). Raises ``ValueError`` on NaN/inf or mismatched lengths.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"leak.assess: alpha={alpha!r} must be between 0 and 1, e.g. 0.01")
    t, v = _as_arrays(times_s, values)
    n = t.size
    if n < max(min_points, 3):
        return LeakVerdict(
            False,
            0.0,
            1.0,
            0.0,
            0.0,
            0.0,
            f"too few points to judge: {n} readings, need at least {max(min_points, 3)}",
        )
    duration = float(t[-1] - t[0])
    if duration <= 0:
        return LeakVerdict(
            False, 0.0, 1.0, 0.0, 0.0, 0.0, "too short to judge: all readings share one time"
        )
    if float(np.ptp(v)) == 0.0:
        return LeakVerdict(
            False, 0.0, 1.0, 0.0, 0.0, 0.0, f"constant at {format_quantity(float(v[0]), unit)}"
        )
    t, v = _reduce(t, v)

    # imported here: scipy.stats takes about a second to import, and every `revopipe`
    # command loads this plugin
    from scipy import stats

    mk = stats.kendalltau(t, v, alternative="greater")
    p = float(mk.pvalue)
    if not math.isfinite(p):
        p = 1.0
    slope = float(stats.theilslopes(v, t).slope)
    growth = slope * duration

    floors = _floors(t, v)
    if floors is None:
        steadiness = 0.0
        rises = 0
    else:
        need = MIN_RISE_SHARE * slope * duration / SEGMENTS
        rises = sum(1 for a, b in itertools.pairwise(floors) if b - a >= need > 0)
        steadiness = rises / (SEGMENTS - 1)

    rate = _rate(slope, duration, unit)
    p_text = f"p={p:.2g}"
    trend = p < alpha and slope > 0
    big_enough = growth >= min_growth
    steady = floors is not None and rises >= MIN_STEADY_TRANSITIONS
    at, height, step_rss = _best_step(t, v)
    line_rss = _line_rss(t, v)
    one_jump = _prefers_step(line_rss, step_rss, t.size)
    leaking = trend and big_enough and steady and not one_jump

    quarters = f"the floor rose {rises}/{SEGMENTS - 1} times between {SEGMENTS} quarters"
    if leaking:
        reason = (
            f"grows {rate} ({format_quantity(growth, unit)} over {duration:.4g}s), "
            f"steadily: {quarters}, {p_text}"
        )
    elif not trend:
        reason = f"no significant upward trend ({p_text} >= alpha={alpha:g}; slope {rate})"
    elif not big_enough:
        reason = (
            f"grows {rate}, {p_text}, but only {format_quantity(growth, unit)} over the "
            f"window, under min_growth={format_quantity(min_growth, unit)}"
        )
    elif one_jump:
        reason = (
            f"one jump of {format_quantity(height, unit)} at t={at:.6g}s, flat before and "
            f"after (a single step fits better than a line; {quarters})"
        )
    elif floors is None:
        reason = f"grows {rate}, {p_text}, but the readings are too uneven in time to judge"
    else:
        reason = (
            f"rises and falls back rather than growing: only {quarters} "
            f"({rate}, {p_text}), as a collected working set does"
        )
    return LeakVerdict(leaking, slope, p, 1.0 - p, steadiness, growth, reason)
