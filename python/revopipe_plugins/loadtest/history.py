"""Load-test results across runs, and change points in them (E-divisive means).

Every `revopipe loadtest` run appends one row to the `runs` table of the load-test SQLite
file (`<data_dir>/loadtest/baselines.db`, next to the baselines, WAL): the test's name,
start time, duration, requests, errors, error rate, req/s, latency p50/p95/p99 (seconds),
test type, model and the summary as JSON. Each name keeps its last `DEFAULT_KEEP` (1000)
runs; a run's number (`seq`, "#14") counts every run of that name ever recorded, so it
stays the same when old runs are dropped.

`analyse(runs)` looks for shifts across runs in the per-run p95 latency, req/s and error
rate with `revopipe_plugins.optimizer.changepoint.detect` (E-divisive means, Matteson &
James 2014, with a permutation test). Only runs of the same test type and model as the
latest one form the series: a `--type smoke` run between `--type load` runs of the same
name is a different experiment, not a regression.

False-positive rate: `detect` gives a series without any shift a change point with
probability at most its `pvalue`. Each of the k metrics is tested at `pvalue / k`
(Bonferroni), so a history in which nothing shifted gets any change point reported with
probability at most `pvalue` (0.01 by default) per analysis. The analysis runs again after
every run on overlapping data, so over many runs false alarms are not independent and their
chance adds up; that is why a regression only fails the command behind an explicit flag.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from revopipe_plugins.loadtest.thresholds import observe

#: Runs kept per name; older ones are deleted as new ones arrive.
DEFAULT_KEEP = 1000
#: Runs of one test (same name, type and model) needed before looking for change points.
DEFAULT_MIN_RUNS = 10
DEFAULT_PVALUE = 0.01
#: Fewest runs on each side of a change point: a shift is reported once 3 runs show it.
DEFAULT_MIN_SIZE = 3
#: A change point whose new regime started within this many runs "involves the latest runs".
DEFAULT_RECENT = 20
#: A worse shift smaller than this (relative to the mean before) is reported but is no
#: regression: runs on a busy machine drift by a few percent (as in `baseline.compare`).
DEFAULT_MIN_CHANGE = 0.10
DEFAULT_METRICS = ("p95", "rps", "errors")
DB_FILE = Path("loadtest") / "baselines.db"

Direction = Literal["regression", "improvement", "shift"]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    column: str
    #: +1: higher is worse (latency, errors); -1: lower is worse (throughput)
    worse: int
    unit: str


METRICS: dict[str, Metric] = {
    "p50": Metric("p50", "p50 latency", "p50", +1, "s"),
    "p95": Metric("p95", "p95 latency", "p95", +1, "s"),
    "p99": Metric("p99", "p99 latency", "p99", +1, "s"),
    "rps": Metric("rps", "throughput", "rps", -1, "req/s"),
    "errors": Metric("errors", "error rate", "error_rate", +1, "%"),
}


def format_value(metric: Metric, value: float | None) -> str:
    if value is None:
        return "-"
    if metric.unit == "s":
        return f"{value * 1e3:.2f} ms"
    if metric.unit == "%":
        return f"{value * 100:.2f} %"
    return f"{value:.1f} req/s"


def format_time(started: float) -> str:
    return dt.datetime.fromtimestamp(started, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class HistoryError(Exception):
    """A run history that cannot be opened, written or read."""


@dataclass(frozen=True)
class RecordedRun:
    """One recorded run. Latencies are seconds and None when no request completed;
    `error_rate` is failed / completed requests (None likewise)."""

    name: str
    seq: int
    started: float  # unix seconds
    duration: float
    requests: int
    errors: int
    error_rate: float | None
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None
    test: str
    model: str
    summary: dict[str, Any] = field(default_factory=dict, repr=False)

    def value(self, metric: str) -> float | None:
        v: float | None = getattr(self, METRICS[metric].column)
        return v

    def to_json(self, with_summary: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_summary:
            del out["summary"]
        return out


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    started REAL NOT NULL,
    duration REAL NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    error_rate REAL,
    rps REAL NOT NULL,
    p50 REAL,
    p95 REAL,
    p99 REAL,
    test TEXT NOT NULL,
    model TEXT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (name, seq)
)
"""
_COLUMNS = (
    "name, seq, started, duration, requests, errors, error_rate, rps, p50, p95, p99, test, "
    "model, summary"
)


class RunHistory:
    """The `runs` table. Shares its file with `BaselineStore` (own table, own connection;
    WAL, so a reader never blocks a writer). Use as a context manager or call `close()`."""

    def __init__(self, path: str | Path, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise HistoryError(f"loadtest history: keep={keep} must be >= 1")
        self.path = Path(path)
        self.keep = keep
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"loadtest history: cannot open {self.path}: {exc}") from None
        try:
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise HistoryError(f"loadtest history: {self.path}: cannot switch to WAL ({mode})")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise HistoryError(
                f"loadtest history: {self.path} is not a load-test database ({exc}); move it "
                "away or use another --data-dir"
            ) from None

    @classmethod
    def for_data_dir(cls, data_dir: str | Path, keep: int = DEFAULT_KEEP) -> RunHistory:
        return cls(Path(data_dir) / DB_FILE, keep)

    def __enter__(self) -> RunHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def record(
        self,
        name: str,
        summary: Mapping[str, Any],
        *,
        started: float | None = None,
        test: str = "custom",
        model: str = "closed",
    ) -> RecordedRun:
        """Append a run (a generator summary as `LoadRun.summary()` returns it) under `name`
        and drop that name's runs beyond `keep`. `started` defaults to now minus the run's
        interval."""
        if not isinstance(name, str) or not name.strip():
            raise HistoryError("loadtest history: a run needs a non-empty name (--name)")
        duration = float(summary.get("interval", 0.0))
        if started is None:
            started = time.time() - duration
        rest = {k: v for k, v in summary.items() if k != "latency_hdr"}
        try:
            summary_json = json.dumps(rest)
        except (TypeError, ValueError) as exc:
            raise HistoryError(
                f"loadtest history {name!r}: the summary must be JSON values ({exc})"
            ) from None

        def metric(key: str) -> float | None:
            v = observe(key, summary)
            return None if v is None else float(v)

        errors = int(sum((summary.get("errors") or {}).values()))
        values = (
            float(started),
            duration,
            int(summary.get("requests", 0)),
            errors,
            metric("error_rate"),
            metric("rps") or 0.0,
            metric("p50"),
            metric("p95"),
            metric("p99"),
            test,
            model,
        )
        try:
            # IMMEDIATE: two runs of one name finishing together must not share a number
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                (last,) = self._conn.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM runs WHERE name = ?", (name,)
                ).fetchone()
                seq = int(last) + 1
                self._conn.execute(
                    f"INSERT INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                    (name, seq, *values, summary_json),
                )
                self._conn.execute(
                    "DELETE FROM runs WHERE name = ? AND seq <= ?", (name, seq - self.keep)
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise HistoryError(f"loadtest history: {self.path}: cannot record: {exc}") from None
        return RecordedRun(name, seq, *values, summary=rest)

    def runs(self, name: str, last: int | None = None) -> list[RecordedRun]:
        """The runs of `name`, oldest first (only the `last` ones if given)."""
        query = f"SELECT {_COLUMNS} FROM runs WHERE name = ? ORDER BY seq DESC"
        params: tuple[Any, ...] = (name,)
        if last is not None:
            query += " LIMIT ?"
            params = (name, last)
        try:
            rows = self._conn.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(f"loadtest history: {self.path}: cannot read: {exc}") from None
        return [self._run(row) for row in reversed(rows)]

    def _run(self, row: tuple[Any, ...]) -> RecordedRun:
        name, seq, *_ = row
        try:
            summary = json.loads(row[-1])
        except (TypeError, ValueError) as exc:
            raise HistoryError(
                f"loadtest history: {self.path}: run #{seq} of {name!r} is damaged ({exc}); "
                "delete the row or the file"
            ) from None
        _, _, started, duration, requests, errors, error_rate, rps, p50, p95, p99, test, model = (
            row[:-1]
        )
        return RecordedRun(
            name,
            seq,
            started,
            duration,
            requests,
            errors,
            error_rate,
            rps,
            p50,
            p95,
            p99,
            test,
            model,
            summary,
        )

    def names(self) -> dict[str, int]:
        """Each recorded name with its number of kept runs."""
        rows = self._conn.execute(
            "SELECT name, COUNT(*) FROM runs GROUP BY name ORDER BY name"
        ).fetchall()
        return {str(n): int(c) for n, c in rows}

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# -- analysis ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shift:
    """A change point in one metric across runs: `run` is the first run of the new regime."""

    metric: str
    label: str
    run: RecordedRun
    p_value: float
    mean_before: float
    mean_after: float
    magnitude: float  # (after - before) / |before|; ±inf from 0
    direction: Direction
    recent: bool  # the new regime started within the last `recent` runs of the series
    since: tuple[RecordedRun, ...]  # the series' runs from `run` to the next change point

    @property
    def is_regression(self) -> bool:
        return self.direction == "regression"

    def text(self, max_since: int = 5) -> str:
        """'p95 latency shifted +38 % at run #14 (2026-11-29 12:00 UTC), p=0.0099; runs
        since: #14 52.10 ms, ...'"""
        metric = METRICS[self.metric]
        change = (
            f"{self.magnitude:+.0%}".replace("%", " %")
            if math.isfinite(self.magnitude)
            else f"from {format_value(metric, self.mean_before)}"
        )
        shown = [f"#{r.seq} {format_value(metric, r.value(self.metric))}" for r in self.since]
        if len(shown) > max_since:
            shown = [*shown[: max_since - 1], "…", shown[-1]]
        when = format_time(self.run.started)
        before = format_value(metric, self.mean_before)
        after = format_value(metric, self.mean_after)
        return (
            f"{self.label} shifted {change} at run #{self.run.seq} ({when}), "
            f"p={self.p_value:.2g} ({before} → {after}, {self.direction}); runs since: "
            + ", ".join(shown)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "run": self.run.seq,
            "started": self.run.started,
            "p_value": self.p_value,
            "mean_before": self.mean_before,
            "mean_after": self.mean_after,
            "magnitude": self.magnitude if math.isfinite(self.magnitude) else None,
            "direction": self.direction,
            "recent": self.recent,
            "runs_since": [r.seq for r in self.since],
            "text": self.text(),
        }


@dataclass(frozen=True)
class Analysis:
    """Change points across the runs of one test. `message` says why there are none when
    the analysis could not run (too few runs)."""

    name: str
    runs: int  # runs in the analysed series (same test type and model as the latest)
    min_runs: int
    pvalue: float
    metrics: tuple[str, ...]
    shifts: tuple[Shift, ...]
    message: str | None = None

    @property
    def ran(self) -> bool:
        return self.message is None

    @property
    def recent(self) -> list[Shift]:
        """The last change point of each metric, when it involves the latest runs."""
        return [s for s in self.shifts if s.recent]

    @property
    def regressions(self) -> list[Shift]:
        return [s for s in self.recent if s.is_regression]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runs": self.runs,
            "min_runs": self.min_runs,
            "pvalue": self.pvalue,
            "metrics": list(self.metrics),
            "message": self.message,
            "change_points": [s.to_json() for s in self.shifts],
            "recent": [s.text() for s in self.recent],
            "regression": bool(self.regressions),
        }


def _direction(metric: Metric, magnitude: float, min_change: float) -> Direction:
    if abs(magnitude) < min_change:
        return "shift"
    return "regression" if magnitude * metric.worse > 0 else "improvement"


def analyse(
    runs: Sequence[RecordedRun],
    metrics: Iterable[str] = DEFAULT_METRICS,
    *,
    pvalue: float = DEFAULT_PVALUE,
    min_runs: int = DEFAULT_MIN_RUNS,
    min_size: int = DEFAULT_MIN_SIZE,
    recent: int = DEFAULT_RECENT,
    min_change: float = DEFAULT_MIN_CHANGE,
    permutations: int | None = None,
    seed: int = 0,
) -> Analysis:
    """Change points in each metric's per-run series (runs oldest first, as
    `RunHistory.runs` returns them). The series holds the runs of the latest run's test
    type and model that have a value for the metric. Each metric is tested at
    `pvalue / len(metrics)`, so a history with no shift gets any change point with
    probability at most `pvalue`. `permutations` defaults to enough for a p-value of a
    fifth of that level."""
    keys = tuple(dict.fromkeys(metrics))
    unknown = [k for k in keys if k not in METRICS]
    if unknown or not keys:
        raise ValueError(
            f"loadtest history: unknown metric(s) {unknown}; choose from {', '.join(METRICS)}"
        )
    if not 0.0 < pvalue < 1.0:
        raise ValueError(f"loadtest history: pvalue={pvalue} must be in (0, 1), e.g. 0.01")
    if min_runs < 2 * min_size:
        raise ValueError(
            f"loadtest history: min_runs={min_runs} must be >= 2 * min_size ({2 * min_size})"
        )
    name = runs[-1].name if runs else ""
    if runs:
        latest = runs[-1]
        series_runs = [r for r in runs if (r.test, r.model) == (latest.test, latest.model)]
    else:
        series_runs = []
    if len(series_runs) < min_runs:
        what = f"{runs[-1].test}/{runs[-1].model} " if runs else ""
        message = (
            f"loadtest history {name!r}: {len(series_runs)} {what}run(s) recorded; change-point "
            f"detection needs {min_runs} runs of the same test — run it "
            f"{min_runs - len(series_runs)} more time(s)"
        )
        return Analysis(name, len(series_runs), min_runs, pvalue, keys, (), message)

    # Imported here: numpy costs ~0.15 s, and every `revopipe` command imports this module
    # through the plugin's command hook.
    from revopipe_plugins.optimizer.changepoint import detect

    level = pvalue / len(keys)
    # enough for p-values down to a fifth of the level (a clear shift is not decided by the
    # permutation noise), capped for tiny levels at twice the bare minimum
    perms = permutations or max(
        100, min(math.ceil(5.0 / level), 20_000) - 1, math.ceil(2.0 / level) - 1
    )
    shifts: list[Shift] = []
    for key in keys:
        metric = METRICS[key]
        points = [(r, v) for r in series_runs if (v := r.value(key)) is not None]
        if len(points) < min_runs:
            continue
        found = detect(
            [v for _, v in points],
            pvalue=level,
            permutations=perms,
            min_size=min_size,
            seed=seed,
        )
        ends = [cp.index for cp in found[1:]] + [len(points)]
        for i, cp in enumerate(found):
            last = i == len(found) - 1
            shifts.append(
                Shift(
                    metric=key,
                    label=metric.label,
                    run=points[cp.index][0],
                    p_value=cp.p_value,
                    mean_before=cp.mean_before,
                    mean_after=cp.mean_after,
                    magnitude=cp.magnitude,
                    direction=_direction(metric, cp.magnitude, min_change),
                    recent=last and len(points) - cp.index <= recent,
                    since=tuple(r for r, _ in points[cp.index : ends[i]]),
                )
            )
    return Analysis(name, len(series_runs), min_runs, pvalue, keys, tuple(shifts))
