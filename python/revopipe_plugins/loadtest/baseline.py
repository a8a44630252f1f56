"""Named baselines of load test runs (SQLite) and the statistical comparison of a run to one.

`BaselineStore(path)` keeps, per name, the run's summary dict (with its `latency_hdr`), the
per-second req/s series and free-form metadata; the default file is
`<data_dir>/loadtest/baselines.db` (`BaselineStore.for_data_dir`).

`compare(baseline, current)` answers "regressed / improved / unchanged" per metric and
overall, with an effect size rather than a bare percentage:

- latency: a Mann-Whitney U test on the two latency distributions, read from the HDR
  histograms as counts over shared buckets (geometric, 0.5 % wide: values in one bucket are
  ties, which the test's tie correction handles). The effect size is Cliff's delta
  (P(current > baseline) - P(current < baseline)), judged with Romano et al.'s bounds:
  |d| < 0.147 negligible, < 0.33 small, < 0.474 medium, else large.
  Load test latencies are millions of observations that are not independent (one slow
  second slows thousands of requests), so with the raw counts any difference, however
  small, would be "significant". The test therefore down-weights each sample to an
  effective size of at most `max_n` (5000) observations, keeping its shape: the p-value
  then asks "is this shift visible in 5000 requests?", and the effect size (which does
  not depend on the counts) decides whether it matters.
- throughput: Welch's t-test on the per-second req/s samples (unequal variances; the
  from scipy), effect size Hedges' g (bias-corrected Cohen's d), judged with
  Cohen's bounds: |g| < 0.2 negligible, < 0.5 small, < 0.8 medium, else large.
  Per-second req/s varies little within a run, so a 2 % difference between two runs of
  the same server can be a "large" g; throughput also needs a relative change of the
  mean of at least `min_rps_change` (10 %) to count.
- latency has the same trap: Cliff's delta measures how consistently one run is slower,
  not by how much, so two runs of the same server on a busy machine (every request 2 %
  slower) score "large". Latency therefore also needs the median to move by at least
  `min_latency_change` (10 %) to count.

A metric is `regressed` (or `improved`) only when the test is significant at `alpha`
(0.01) AND the effect is not negligible; the overall verdict is `regressed` if any metric
regressed, else `improved` if any improved, else `unchanged`. The relative change of p50
and p99 is reported beside the verdict, for people.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
import statistics
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from revopipe._core import hdr_bucket_counts

Verdict = Literal["regressed", "improved", "unchanged"]

SCHEMA_VERSION = 1
DEFAULT_ALPHA = 0.01
DEFAULT_MAX_N = 5000
DEFAULT_MIN_RPS_CHANGE = 0.10
DEFAULT_MIN_LATENCY_CHANGE = 0.10
#: Latency histograms record microseconds (unit "s", resolution 1 µs).
LATENCY_RESOLUTION = 1e-6
BUCKET_RATIO = 1.005
CLIFF_BOUNDS = ((0.147, "negligible"), (0.33, "small"), (0.474, "medium"))
HEDGES_BOUNDS = ((0.2, "negligible"), (0.5, "small"), (0.8, "medium"))
# The compressed HdrHistogram V2 cookie, as the first 4 bytes of a raw (not base64) payload.
_HDR_V2_DEFLATE_COOKIE = bytes.fromhex("1c849314")


class BaselineError(Exception):
    """A baseline store that cannot be used, or a run that cannot be compared."""


class RunLike(Protocol):
    @property
    def summary(self) -> Mapping[str, Any]: ...
    @property
    def per_second_rps(self) -> Sequence[float]: ...


@dataclass(frozen=True)
class Run:
    """A run to compare: its summary dict and its per-second req/s series."""

    summary: Mapping[str, Any]
    per_second_rps: Sequence[float]

    @classmethod
    def from_snapshots(
        cls, summary: Mapping[str, Any], snapshots: Sequence[Mapping[str, Any]]
    ) -> Run:
        return cls(summary, per_second_rps(snapshots))


@dataclass(frozen=True)
class Baseline:
    name: str
    created_ns: int
    summary: dict[str, Any]
    per_second_rps: list[float]
    meta: dict[str, Any] = field(default_factory=dict)


def per_second_rps(snapshots: Sequence[Mapping[str, Any]]) -> list[float]:
    """req/s of each snapshot; a final partial interval under half a second is left out,
    as a handful of requests over a few milliseconds is no rate."""
    out = []
    for i, snap in enumerate(snapshots):
        interval = float(snap.get("interval", 0.0))
        if interval <= 0 or (interval < 0.5 and i == len(snapshots) - 1):
            continue
        out.append(float(snap.get("requests", 0)) / interval)
    return out


def hdr_b64(value: bytes | str) -> str:
    """The base64 text `revopipe._core.hdr_bucket_counts` reads, from a raw compressed V2
    payload (the generator's `latency_hdr`) or from base64 (text or bytes)."""
    if isinstance(value, str):
        return value
    if value[:4] == _HDR_V2_DEFLATE_COOKIE:
        return base64.b64encode(value).decode("ascii")
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise BaselineError(
            "latency_hdr is neither a compressed HdrHistogram V2 payload nor base64 text"
        ) from None


# -- statistics ----------------------------------------------------------------------------


def latency_bounds(lo: float, hi: float) -> list[float]:
    """Shared geometric bucket bounds (seconds, 0.5 % apart) covering lo..hi."""
    lo = max(lo, LATENCY_RESOLUTION) / BUCKET_RATIO
    hi = max(hi, lo)
    n = math.ceil(math.log(hi / lo) / math.log(BUCKET_RATIO)) + 1
    bounds = [lo * BUCKET_RATIO**i for i in range(n + 1)]
    # A catch-all top bucket: the summary's max is an HDR bucket's value, and a value in the
    # same bucket may sit slightly above it.
    bounds.append(bounds[-1] * 2 + 1.0)
    return bounds


def latency_buckets(summary: Mapping[str, Any], bounds: Sequence[float]) -> list[int]:
    """Counts of the run's latencies in (bounds[i-1], bounds[i]] (the first: <= bounds[0])."""
    try:
        cumulative = hdr_bucket_counts(
            hdr_b64(summary["latency_hdr"]), LATENCY_RESOLUTION, list(bounds)
        )
    except (KeyError, TypeError) as exc:
        raise BaselineError(f"the run's summary has no usable latency_hdr ({exc!r})") from None
    except ValueError as exc:
        raise BaselineError(f"the run's latency_hdr does not decode: {exc}") from None
    return [c - p for c, p in zip(cumulative, [0, *cumulative[:-1]], strict=True)]


@dataclass(frozen=True)
class RankTest:
    """Mann-Whitney U of x against y, from counts over shared ordered buckets."""

    u: float  # pairs with x > y, plus half the ties, on the weighted counts
    z: float
    p_value: float
    cliffs_delta: float  # P(x > y) - P(x < y), on the raw counts
    n_x: int
    n_y: int
    n_effective: tuple[float, float]


def mann_whitney_buckets(
    x: Sequence[float], y: Sequence[float], max_n: float = DEFAULT_MAX_N
) -> RankTest:
    """Two-sided Mann-Whitney U with tie correction and continuity correction on bucketed
    samples (x[i], y[i] = how many of each fall in bucket i, buckets in ascending order).
    Each sample is down-weighted to at most `max_n` observations for the p-value (see the
    module docstring); Cliff's delta uses the counts as given."""
    n_x, n_y = sum(x), sum(y)
    if len(x) != len(y) or n_x <= 0 or n_y <= 0:
        raise ValueError("mann_whitney_buckets: both samples need observations in the same buckets")

    def pairs(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
        greater = ties = below = 0.0
        for ai, bi in zip(a, b, strict=True):
            greater += ai * below
            ties += ai * bi
            below += bi
        return greater, ties

    greater, ties = pairs(x, y)
    total = n_x * n_y
    delta = (greater - (total - greater - ties)) / total
    sx, sy = min(1.0, max_n / n_x), min(1.0, max_n / n_y)
    wx, wy = [v * sx for v in x], [v * sy for v in y]
    n1, n2 = n_x * sx, n_y * sy
    greater_w, ties_w = pairs(wx, wy)
    u = greater_w + ties_w / 2
    big_n = n1 + n2
    tie_term = sum(max(0.0, (a + b) ** 3 - (a + b)) for a, b in zip(wx, wy, strict=True))
    variance = n1 * n2 / 12 * ((big_n + 1) - tie_term / (big_n * (big_n - 1)))
    mean = n1 * n2 / 2
    if variance <= 0:
        # Every value in one bucket: the samples cannot be told apart.
        z, p = 0.0, 1.0
    else:
        z = math.copysign(max(0.0, abs(u - mean) - 0.5), u - mean) / math.sqrt(variance)
        p = math.erfc(abs(z) / math.sqrt(2))
    return RankTest(u, z, p, delta, round(n_x), round(n_y), (n1, n2))


@dataclass(frozen=True)
class WelchTest:
    t: float
    df: float
    p_value: float
    hedges_g: float  # (mean_x - mean_y) / pooled sd, bias-corrected
    mean_x: float
    mean_y: float


def welch_t_test(x: Sequence[float], y: Sequence[float]) -> WelchTest:
    """Welch's two-sided t-test of mean(x) against mean(y), with Hedges' g."""
    n1, n2 = len(x), len(y)
    if n1 < 2 or n2 < 2:
        raise ValueError("welch_t_test: each sample needs at least 2 values")
    m1, m2 = statistics.fmean(x), statistics.fmean(y)
    v1, v2 = statistics.variance(x, m1), statistics.variance(y, m2)
    if v1 == 0 and v2 == 0:
        # constant samples: scipy gives NaN; the means either agree or differ for certain
        diff = m1 - m2
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        df, p = float(n1 + n2 - 2), 1.0 if diff == 0 else 0.0
    else:
        # Imported here: scipy takes seconds to import, and every `revopipe` command loads
        # this module through the plugin's CLI hook.
        from scipy import stats

        with warnings.catch_warnings():
            # near-identical samples warn of precision loss; the p-value is still right
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_ind(x, y, equal_var=False)
        t, p, df = float(result.statistic), float(result.pvalue), float(result.df)
    diff = m1 - m2
    pooled = math.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2))
    correction = 1 - 3 / (4 * (n1 + n2) - 9)
    if pooled == 0:
        g = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        g = diff / pooled * correction
    return WelchTest(t, df, p, g, m1, m2)


def magnitude(effect: float, bounds: Sequence[tuple[float, str]]) -> str:
    for bound, name in bounds:
        if abs(effect) < bound:
            return name
    return "large"


# -- comparison ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricComparison:
    """One metric's verdict. For latency, `baseline`/`current` are p50 seconds and the
    effect is Cliff's delta (> 0: the current run is slower); for throughput they are mean
    req/s and the effect is Hedges' g (> 0: the current run is faster)."""

    metric: str
    verdict: Verdict
    test: str
    statistic: float
    p_value: float
    effect: float
    effect_name: str
    magnitude: str
    baseline: float
    current: float
    details: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    verdict: Verdict
    latency: MetricComparison
    throughput: MetricComparison
    alpha: float

    @property
    def metrics(self) -> tuple[MetricComparison, MetricComparison]:
        return (self.latency, self.throughput)


def _relative(baseline: float, current: float) -> float:
    if baseline == 0:
        return 0.0 if current == 0 else math.inf
    return (current - baseline) / baseline


def _unchanged(metric: str, test: str, effect_name: str, note: str) -> MetricComparison:
    return MetricComparison(
        metric, "unchanged", test, 0.0, 1.0, 0.0, effect_name, "negligible", 0.0, 0.0, note=note
    )


def compare_latency(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    alpha: float = DEFAULT_ALPHA,
    max_n: float = DEFAULT_MAX_N,
    min_change: float = DEFAULT_MIN_LATENCY_CHANGE,
) -> MetricComparison:
    test, effect_name = "Mann-Whitney U", "Cliff's delta"
    if not baseline.get("requests") or not current.get("requests"):
        return _unchanged("latency", test, effect_name, "no completed requests to compare")
    lat_b, lat_c = baseline["latency"], current["latency"]
    bounds = latency_bounds(min(lat_b["min"], lat_c["min"]), max(lat_b["max"], lat_c["max"]))
    x = [float(c) for c in latency_buckets(current, bounds)]
    y = [float(c) for c in latency_buckets(baseline, bounds)]
    if sum(x) == 0 or sum(y) == 0:
        return _unchanged("latency", test, effect_name, "a latency histogram is empty")
    rank = mann_whitney_buckets(x, y, max_n)
    size = magnitude(rank.cliffs_delta, CLIFF_BOUNDS)
    verdict: Verdict = "unchanged"
    p50_change = _relative(lat_b["p50"], lat_c["p50"])
    if rank.p_value < alpha and size != "negligible" and abs(p50_change) >= min_change:
        verdict = "regressed" if rank.cliffs_delta > 0 else "improved"
    details = {
        "p50_change": p50_change,
        "p99_change": _relative(lat_b["p99"], lat_c["p99"]),
        "p99_baseline": float(lat_b["p99"]),
        "p99_current": float(lat_c["p99"]),
        "n_baseline": float(rank.n_y),
        "n_current": float(rank.n_x),
    }
    return MetricComparison(
        "latency",
        verdict,
        test,
        rank.z,
        rank.p_value,
        rank.cliffs_delta,
        effect_name,
        size,
        float(lat_b["p50"]),
        float(lat_c["p50"]),
        details,
    )


def compare_throughput(
    baseline_rps: Sequence[float],
    current_rps: Sequence[float],
    alpha: float = DEFAULT_ALPHA,
    min_change: float = DEFAULT_MIN_RPS_CHANGE,
) -> MetricComparison:
    test, effect_name = "Welch t", "Hedges' g"
    if len(baseline_rps) < 2 or len(current_rps) < 2:
        return _unchanged("throughput", test, effect_name, "fewer than 2 seconds of req/s")
    welch = welch_t_test(current_rps, baseline_rps)
    size = magnitude(welch.hedges_g, HEDGES_BOUNDS)
    change = _relative(welch.mean_y, welch.mean_x)
    verdict: Verdict = "unchanged"
    if welch.p_value < alpha and size != "negligible" and abs(change) >= min_change:
        verdict = "improved" if welch.hedges_g > 0 else "regressed"
    return MetricComparison(
        "throughput",
        verdict,
        test,
        welch.t,
        welch.p_value,
        welch.hedges_g,
        effect_name,
        size,
        welch.mean_y,
        welch.mean_x,
        {"rps_change": change, "df": welch.df},
    )


def compare(
    baseline: RunLike,
    current: RunLike,
    alpha: float = DEFAULT_ALPHA,
    max_n: float = DEFAULT_MAX_N,
    min_rps_change: float = DEFAULT_MIN_RPS_CHANGE,
    min_latency_change: float = DEFAULT_MIN_LATENCY_CHANGE,
) -> Comparison:
    """The current run against the baseline (a `Baseline`, a `Run` or anything with
    `summary` and `per_second_rps`)."""
    latency = compare_latency(baseline.summary, current.summary, alpha, max_n, min_latency_change)
    throughput = compare_throughput(
        baseline.per_second_rps, current.per_second_rps, alpha, min_rps_change
    )
    verdicts = {latency.verdict, throughput.verdict}
    overall: Verdict = (
        "regressed"
        if "regressed" in verdicts
        else "improved"
        if "improved" in verdicts
        else "unchanged"
    )
    return Comparison(overall, latency, throughput, alpha)


# -- store ---------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS baselines (
    name TEXT PRIMARY KEY,
    created_ns INTEGER NOT NULL,
    summary TEXT NOT NULL,
    latency_hdr,
    rps TEXT NOT NULL,
    meta TEXT NOT NULL
)
"""


class BaselineStore:
    """Named baselines in one SQLite file (WAL: a reader never blocks a writer). Saving a
    name again replaces it. Use as a context manager or call `close()`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise BaselineError(f"loadtest baselines: cannot open {self.path}: {exc}") from None
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise BaselineError(
                f"loadtest baselines: {self.path} is not a baseline database ({exc}); "
                "move it away or point the baseline store at another file"
            ) from None

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> BaselineStore:
        return cls(Path(data_dir) / "loadtest" / "baselines.db")

    def _setup(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise BaselineError(
                f"loadtest baselines: {self.path} has schema {version}, newer than this "
                f"revopipe's {SCHEMA_VERSION}; upgrade revopipe or use another file"
            )
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise BaselineError(f"loadtest baselines: {self.path}: cannot switch to WAL ({mode})")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(_SCHEMA)
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def __enter__(self) -> BaselineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def save(
        self,
        name: str,
        summary: Mapping[str, Any],
        per_second_rps: Sequence[float],
        meta: Mapping[str, Any] | None = None,
    ) -> Baseline:
        """Store (or replace) the baseline `name`."""
        if not isinstance(name, str) or not name.strip():
            raise BaselineError("loadtest baselines: a baseline needs a non-empty name")
        if "latency_hdr" not in summary or "latency" not in summary:
            raise BaselineError(
                f"loadtest baseline {name!r}: the summary lacks latency_hdr/latency; pass "
                "LoadGenerator.summary() as it is"
            )
        rest = {k: v for k, v in summary.items() if k != "latency_hdr"}
        hdr = summary["latency_hdr"]
        if not isinstance(hdr, bytes | str):
            raise BaselineError(f"loadtest baseline {name!r}: latency_hdr must be bytes or str")
        rps = [float(v) for v in per_second_rps]
        try:
            summary_json = json.dumps(rest)
            meta_json = json.dumps(dict(meta or {}))
        except (TypeError, ValueError) as exc:
            raise BaselineError(
                f"loadtest baseline {name!r}: summary and meta must be JSON values ({exc})"
            ) from None
        created = time.time_ns()
        try:
            self._conn.execute(
                "INSERT OR REPLACE INTO baselines VALUES (?, ?, ?, ?, ?, ?)",
                (name, created, summary_json, hdr, json.dumps(rps), meta_json),
            )
        except sqlite3.Error as exc:
            raise BaselineError(f"loadtest baselines: {self.path}: cannot save: {exc}") from None
        return Baseline(name, created, {**rest, "latency_hdr": hdr}, rps, dict(meta or {}))

    def load(self, name: str) -> Baseline | None:
        """The baseline `name`, or None."""
        row = self._conn.execute(
            "SELECT name, created_ns, summary, latency_hdr, rps, meta FROM baselines "
            "WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else self._baseline(row)

    def _baseline(self, row: tuple[Any, ...]) -> Baseline:
        name, created, summary_json, hdr, rps_json, meta_json = row
        try:
            summary = json.loads(summary_json)
            rps = json.loads(rps_json)
            meta = json.loads(meta_json)
        except (TypeError, ValueError) as exc:
            raise BaselineError(
                f"loadtest baselines: {self.path}: baseline {name!r} is damaged ({exc}); "
                "delete it and save it again"
            ) from None
        summary["latency_hdr"] = hdr
        return Baseline(name, created, summary, [float(v) for v in rps], meta)

    def list(self) -> list[Baseline]:
        """Every baseline, by name."""
        rows = self._conn.execute(
            "SELECT name, created_ns, summary, latency_hdr, rps, meta FROM baselines ORDER BY name"
        ).fetchall()
        return [self._baseline(row) for row in rows]

    def __iter__(self) -> Iterator[Baseline]:
        return iter(self.list())

    def delete(self, name: str) -> bool:
        """Remove `name`; False when there was no such baseline."""
        cursor = self._conn.execute("DELETE FROM baselines WHERE name = ?", (name,))
        return cursor.rowcount > 0
