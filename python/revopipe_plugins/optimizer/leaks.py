"""Memory series (RSS, Python heap) checked for a steady growth slope with `leak.assess`."""

from __future__ import annotations

import statistics

from revopipe_plugins.optimizer.config import LeakSettings
from revopipe_plugins.optimizer.findings import Finding, duration_text
from revopipe_plugins.optimizer.leak import assess, format_quantity
from revopipe_plugins.optimizer.store import SeriesStore, series_label


def _unit(name: str) -> str:
    if name.startswith(("process.memory", "python.tracemalloc")):
        return "By"
    return "{block}" if name.endswith("allocated_blocks") else "1"


def leaks(store: SeriesStore, cfg: LeakSettings) -> list[Finding]:
    out: list[Finding] = []
    for metric in cfg.metrics:
        for s in store.select_glob(metric):
            if len(s.values) < cfg.min_points:
                continue
            span = s.times[-1] - s.times[0]
            level = statistics.fmean(s.values)
            # growth smaller than this share of the level per hour is not worth anyone's time
            floor = cfg.min_growth_per_hour * abs(level) * span / 3600.0
            unit = _unit(s.name)
            verdict = assess(
                s.times,
                s.values,
                alpha=cfg.alpha,
                min_points=cfg.min_points,
                min_growth=floor,
                unit=unit,
            )
            if not verdict.leaking:
                continue
            label = series_label(s.name, s.tags)
            per_hour = format_quantity(verdict.slope * 3600.0, unit)
            pid = dict(s.tags).get("process.pid")
            who = f"process {pid}" if pid else label
            out.append(
                Finding(
                    key=f"leak:{label}",
                    detector="memory_leak",
                    title=f"{who}: {s.name} grows steadily, {per_hour}/h",
                    action=(
                        "look for a cache or list that only grows: turn on the memory "
                        "source's `tracemalloc = true` in that process to see which lines "
                        "allocate the growth (python.tracemalloc.site.growth)"
                    ),
                    priority="high" if verdict.slope * 3600.0 > 0.1 * abs(level) else "medium",
                    risk="low",
                    evidence={
                        "series": label,
                        "slope_per_hour": per_hour,
                        "growth": format_quantity(verdict.growth, unit),
                        "steadiness": f"{verdict.steadiness:.2f}",
                        "p_value": f"{verdict.p_value:.3g}",
                        "observed_for": duration_text(span),
                        "reason": verdict.reason,
                    },
                    confidence=verdict.confidence,
                )
            )
    return out
