"""Change points (E-divisive means) and trend-to-threshold forecasts on watched series."""

from __future__ import annotations

import math

from revopipe_plugins.optimizer.changepoint import detect, time_to_threshold
from revopipe_plugins.optimizer.config import ChangePointWatch, TrendWatch
from revopipe_plugins.optimizer.findings import (
    Finding,
    duration_text,
    fmt,
    priority_for,
    when,
)
from revopipe_plugins.optimizer.store import SeriesStore, series_label

MIN_SEGMENT = 5
"""Points each side of a change point at least: fewer cannot tell a shift from a spike."""


def change_points(
    store: SeriesStore, watches: list[ChangePointWatch], pvalue: float
) -> list[Finding]:
    """The latest significant shift of each watched series, when it goes the bad way and
    is at least `min_change`. The permutation test keeps the chance that a series with no
    shift reports one at or below `pvalue`."""
    out: list[Finding] = []
    permutations = max(100, math.ceil(1.0 / pvalue) * 2)
    for w in watches:
        for s in store.select_glob(w.metric, w.tags):
            values = list(s.values)[-w.points :]
            times = list(s.times)[-w.points :]
            if len(values) < 4 * MIN_SEGMENT:
                continue
            cps = detect(
                values, pvalue=pvalue, permutations=permutations, min_size=MIN_SEGMENT, seed=0
            )
            if not cps:
                continue
            cp = cps[-1]
            worse = cp.magnitude > 0 if w.higher_is_worse else cp.magnitude < 0
            size = abs(cp.magnitude)
            if not worse or size < w.min_change:
                continue
            label = series_label(s.name, s.tags)
            at = times[cp.index]
            direction = "rose" if cp.magnitude > 0 else "fell"
            pct = "inf" if math.isinf(size) else f"{size * 100:.0f} %"
            out.append(
                Finding(
                    key=f"changepoint:{label}@{at:.0f}",
                    detector="changepoint",
                    title=f"{s.name} {direction} {pct} at {when(at)}",
                    action=(
                        f"find what changed around {when(at)} (deploy, config, dependency, "
                        "load); compare profiles from before and after "
                        "(`revopipe profile`, the profiler source) and revert or fix"
                    ),
                    priority=priority_for(size, 0.5, 0.2),
                    risk="low",
                    evidence={
                        "series": label,
                        "change_point": when(at),
                        "mean_before": fmt(cp.mean_before),
                        "mean_after": fmt(cp.mean_after),
                        "change": pct,
                        "p_value": f"{cp.p_value:.4g}",
                        "points": str(len(values)),
                        "method": "E-divisive means, permutation test",
                    },
                    confidence=1.0 - cp.p_value,
                )
            )
    return out


def trends(store: SeriesStore, watches: list[TrendWatch]) -> list[Finding]:
    """Series whose least-squares line reaches its threshold within the horizon."""
    out: list[Finding] = []
    for w in watches:
        for s in store.select_glob(w.metric, w.tags):
            values = list(s.values)[-w.points :]
            times = list(s.times)[-w.points :]
            span = times[-1] - times[0] if len(times) >= 5 else 0.0
            if span < w.min_span:
                continue  # a line through a few minutes says little about the next hours
            current = values[-1]
            if current >= w.threshold:
                continue  # already there: that is an alert's job, not a forecast
            eta = time_to_threshold(times, values, w.threshold)
            if eta is None or eta > w.horizon or eta > w.max_extrapolation * span:
                continue
            label = series_label(s.name, s.tags)
            out.append(
                Finding(
                    key=f"trend:{label}>={w.threshold:g}",
                    detector="trend",
                    title=f"{s.name} reaches {w.threshold:g} in {duration_text(eta)}",
                    action=(
                        f"act before {when(times[-1] + eta)}: free or add capacity for "
                        f"{label}, or find what makes it grow"
                    ),
                    priority="high" if eta < 6 * 3600 else "medium",
                    risk="low",
                    evidence={
                        "series": label,
                        "current": fmt(current),
                        "threshold": f"{w.threshold:g}",
                        "predicted_at": when(times[-1] + eta),
                        "fitted_over": duration_text(span),
                        "method": "least-squares line (like predict_linear)",
                    },
                )
            )
    return out
