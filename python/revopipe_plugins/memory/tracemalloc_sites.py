"""Allocation sites whose traced memory grew between two tracemalloc snapshots.

tracemalloc hooks every allocation of this interpreter, which costs time on every
allocation while it runs (see the plugin README for the measured overhead), so it is
opt-in and started only by the source that asked for it. Snapshots are slow (they copy
every live trace, then the traces are grouped by line in Python, ~5 µs per live block on
the machine measured), so `step()` is meant to run in a worker thread.
"""

from __future__ import annotations

import fnmatch
import heapq
import importlib
import os
import threading
import tracemalloc
from dataclasses import dataclass

__all__ = ["Site", "SiteTracker"]

_IMPORTLIB_DIR = os.path.dirname(importlib.__file__)

EXCLUDE = (
    # tracemalloc's and this module's own frames: the snapshots and the per-line tables
    # would otherwise top the list.
    tracemalloc.__file__,
    __file__,
    # Imports are one-off growth (module code and dicts) that is not anyone's leak.
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
    os.path.join(_IMPORTLIB_DIR, "*"),
    "<unknown>",
)
"""Filename patterns (fnmatch) of allocation sites never reported."""

Line = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Site:
    """A source line (``file:line``) and how its live traced bytes changed since the
    previous snapshot, with the live size now."""

    site: str
    growth: int
    size: int


def _sizes_by_line(snapshot: tracemalloc.Snapshot) -> dict[Line, int]:
    """Live traced bytes per allocating line (the most recent frame of each trace).

    `Snapshot.compare_to(prev, "lineno")` gives the same figures, but builds a `Traceback`
    per trace and `filter_traces` an fnmatch per trace and filter; with tracing on (which
    also traces those objects) that measured ~50 µs per live block here against ~5 µs for
    this loop over the raw trace tuples. The raw list is a private attribute, stable since
    3.4; without it, fall back to the public `statistics`.
    """
    raw = getattr(snapshot.traces, "_traces", None)
    sizes: dict[Line, int] = {}
    if raw is None:
        for stat in snapshot.statistics("lineno"):
            frame = stat.traceback[0]
            sizes[(frame.filename, frame.lineno)] = stat.size
        return sizes
    get = sizes.get
    for trace in raw:
        frames = trace[2]
        if frames:
            line = frames[0]
            sizes[line] = get(line, 0) + trace[1]
    return sizes


class SiteTracker:
    """Owns tracemalloc for one source: starts it if it was off (and stops it again),
    and diffs the live bytes per line between consecutive snapshots."""

    def __init__(self, frames: int = 1) -> None:
        self.frames = frames
        self.owns = False
        """Whether `start()` turned tracing on (and `stop()` should turn it off)."""
        self._prev: dict[Line, int] | None = None
        self._excluded: dict[str, bool] = {}
        self._lock = threading.Lock()

    def start(self) -> bool:
        """Start tracing with `frames` frames per trace unless it already runs (someone
        else's settings are then kept). True when this call started it."""
        if tracemalloc.is_tracing():
            return False
        tracemalloc.start(self.frames)
        self.owns = True
        return True

    def stop(self) -> None:
        with self._lock:
            self._prev = None
        if self.owns and tracemalloc.is_tracing():
            tracemalloc.stop()
        self.owns = False

    @staticmethod
    def memory() -> tuple[int, int]:
        """(traced bytes now, peak since the previous call); resets the peak so each
        reading covers one interval."""
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        return current, peak

    def _excluded_file(self, filename: str) -> bool:
        hit = self._excluded.get(filename)
        if hit is None:
            hit = any(fnmatch.fnmatch(filename, pattern) for pattern in EXCLUDE)
            self._excluded[filename] = hit
        return hit

    def _sizes(self) -> dict[Line, int]:
        sizes = _sizes_by_line(tracemalloc.take_snapshot())
        return {k: v for k, v in sizes.items() if not self._excluded_file(k[0])}

    def baseline(self) -> None:
        """Take the first snapshot, so that the first `step()` has something to diff."""
        if not tracemalloc.is_tracing():
            return
        sizes = self._sizes()
        with self._lock:
            self._prev = sizes

    def step(self, top: int) -> list[Site]:
        """The `top` sites with the most growth since the previous call, largest first
        (only sites that grew). Blocking: run it in a worker thread."""
        if not tracemalloc.is_tracing():
            return []
        sizes = self._sizes()
        with self._lock:
            prev, self._prev = self._prev, sizes
        if prev is None or top <= 0:
            return []
        grown = [(size - prev.get(line, 0), line, size) for line, size in sizes.items()]
        best = heapq.nlargest(top, (g for g in grown if g[0] > 0))
        return [Site(f"{file}:{lineno}", growth, size) for growth, (file, lineno), size in best]
