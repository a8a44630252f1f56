"""Type stubs for revopipe._core, the Rust core (crate revopipe-python over revopipe-core).

Both functions copy their arguments out of Python first, then release the GIL for the work.
"""

from array import array
from collections.abc import Sequence
from typing import Any, Final, TypedDict

__version__: Final[str]
"""The version of the Rust crate (CARGO_PKG_VERSION)."""

def encode_jsonl(
    names: Sequence[str],
    kinds: bytes,
    values: array[float],
    units: Sequence[str],
    timestamps: array[int],
    tags: Sequence[tuple[tuple[str, str], ...]],
) -> bytes:
    """Encode a columnar metric batch as JSON lines, one object per row, each line ending
    in a newline:

        {"type":"metric","name":...,"kind":"gauge","value":1.5,"unit":"By","timestamp":123,"tags":{"k":"v"}}

    Row i is (names[i], kinds[i], values[i], units[i], timestamps[i], tags[i]). kinds holds
    one code per row: 0 counter, 1 gauge, 2 histogram, 3 set (any bytes-like object works).
    values is a float64 buffer (array('d'); any 1-D buffer of format 'd' works), timestamps
    an int64 buffer of nanoseconds (array('q')), tags per row (key, value) pairs, written
    in the order given. NaN and infinite values are written as null; finite values parse
    back to the identical float.

    Raises ValueError naming the column and row when the columns differ in length or a
    kind is not 0..3, or a str holds a lone surrogate (no UTF-8 form); TypeError naming the
    column (and row) when a column has the wrong type.
    """

def series_keys(
    names: Sequence[str],
    tags: Sequence[tuple[tuple[str, str], ...]],
) -> list[int]:
    """The stable 64-bit series key of each (names[i], tags[i]), as an int in [0, 2**64).

    The key is XXH3-64 (seed 0) of the UTF-8 name and tags, each string followed by the
    byte 0xFF, with the tags sorted by key then value: independent of the order of the
    tags, and the same on every platform, process and run.

    Raises ValueError when the columns differ in length (or a str holds a lone surrogate),
    TypeError when one has the wrong type.
    """

# In-process instruments (rust/python/src/instruments.rs over revopipe_core::instruments).
# Handles hold shared Rust state: the same (name, tags) always gives the same state.

class Counter:
    """A monotonic counter; collected as a cumulative total (never reset)."""

    def inc(self, amount: float = 1.0) -> None:
        """Add amount. Raises ValueError if it is negative, NaN or infinite."""
    @property
    def value(self) -> float:
        """The total since creation."""
    @property
    def name(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def tags(self) -> tuple[tuple[str, str], ...]:
        """Sorted (key, value) pairs."""

class Gauge:
    """A value that goes up and down; collected as its current value."""

    def set(self, value: float) -> None: ...
    def inc(self, amount: float = 1.0) -> None: ...
    def dec(self, amount: float = 1.0) -> None: ...
    @property
    def value(self) -> float: ...
    @property
    def name(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def tags(self) -> tuple[tuple[str, str], ...]: ...

class Histogram:
    """A distribution; collected as the observations since the previous collect."""

    def record(self, value: float) -> None:
        """Record one observation (NaN and infinities are ignored)."""
    def record_exemplar(self, value: float, trace_id: str, span_id: str) -> None:
        """Record one observation and keep it as an exemplar of its trace: the latest one
        per power-of-two range of values, at most 16 per collect. ValueError unless
        trace_id is 32 and span_id 16 lowercase hex digits, not all zero."""
    @property
    def count(self) -> int:
        """Observations recorded since creation (collects do not reset it)."""
    @property
    def resolution(self) -> float:
        """The size of one HdrHistogram unit, in the histogram's unit."""
    @property
    def significant_digits(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def tags(self) -> tuple[tuple[str, str], ...]: ...

def counter(name: str, unit: str = "1", tags: tuple[tuple[str, str], ...] = ()) -> Counter:
    """The counter (name, tags), created on first use. Raises ValueError if that name and
    tags are already another kind of instrument or have another unit."""

def gauge(name: str, unit: str = "1", tags: tuple[tuple[str, str], ...] = ()) -> Gauge:
    """The gauge (name, tags), created on first use (see counter)."""

def histogram(
    name: str,
    unit: str = "s",
    tags: tuple[tuple[str, str], ...] = (),
    significant_digits: int = 3,
) -> Histogram:
    """The histogram (name, tags), created on first use with significant_digits (1..5) of
    HdrHistogram precision; a later call with other digits gets the existing one. Raises
    ValueError on a kind/unit conflict or digits outside 1..5."""

class InstrumentReading(TypedDict, total=False):
    """One entry of `collect_instruments()`; `value` for counters and gauges, the rest
    for histograms."""

    kind: int
    name: str
    unit: str
    tags: tuple[tuple[str, str], ...]
    value: float
    count: int
    sum: float
    min: float
    max: float
    hdr: str
    resolution: float
    exemplars: list[tuple[float, str, str, int]]

def collect_instruments() -> list[InstrumentReading]:
    """Every instrument, in order of creation. Counters/gauges: {"kind": 0 | 1, "name",
    "unit", "tags", "value": float}. Histograms with observations since the previous collect
    (which this one takes): {"kind": 2, "name", "unit", "tags", "count": int, "sum", "min",
    "max": float, "hdr": base64 compressed HdrHistogram V2 (values in units of resolution),
    "resolution": float, "exemplars": [(value, trace_id, span_id, timestamp_ns)] by value}."""

def hdr_bucket_counts(hdr_b64: str, resolution: float, bounds: Sequence[float]) -> list[int]:
    """For each bound (finite, strictly ascending, in the histogram's unit), how many
    values of the encoded histogram are at or below it: cumulative Prometheus/OTLP bucket
    counts. A value equal to a bound is always counted; one above it only when within the
    histogram's precision. ValueError on an undecodable hdr_b64 or bad bounds."""

def reset_instruments() -> None:
    """Drop every instrument (tests). Handles already given out keep working, uncollected."""

class WindowDict(TypedDict):
    """One series' aggregate over one closed window, from `Aggregator.flush`. `last` is
    None for histograms; `increase` / `rate` only for counters; `distinct` only for sets;
    `percentiles` (q, value) and `hdr` (base64 compressed HdrHistogram V2 of the recorded
    integers round(value / resolution)) only for histograms; `resolution` is the unit's
    (revopipe_core::resolution::resolution_for_unit)."""

    name: str
    unit: str
    tags: tuple[tuple[str, str], ...]
    kind: int
    start_ns: int
    end_ns: int
    count: int
    sum: float
    min: float
    max: float
    last: float | None
    increase: float | None
    rate: float | None
    distinct: int | None
    percentiles: list[tuple[float, float]]
    hdr: str | None
    resolution: float

class Aggregator:
    """Windowed per-series aggregation (tumbling epoch-aligned windows, HDR percentiles,
    counter increases with resets, gauges, exact set cardinality, snapshot merging, a
    cap of tag sets per metric name). Raises ValueError for a bad late_policy ("drop" or
    "current"), significant_digits outside 1..5 or a percentile outside 0..100."""

    def __init__(
        self,
        window_ns: int,
        percentiles: Sequence[float] = (50, 90, 95, 99, 99.9),
        significant_digits: int = 3,
        max_series_per_metric: int = 2000,
        grace_ns: int = 0,
        late_policy: str = "drop",
    ) -> None: ...
    def ingest(
        self,
        names: Sequence[str],
        kinds: bytes,
        values: array[float],
        units: Sequence[str],
        timestamps: array[int],
        tags: Sequence[tuple[tuple[str, str], ...]],
    ) -> None:
        """Aggregate a columnar batch (GIL released while aggregating)."""
    def ingest_values(
        self,
        name: str,
        unit: str,
        tags: tuple[tuple[str, str], ...],
        values: array[float],
        timestamp_ns: int,
    ) -> None:
        """Aggregate many histogram values of one series at one timestamp (fast path)."""
    def merge_snapshot(
        self,
        name: str,
        unit: str,
        tags: tuple[tuple[str, str], ...],
        start_ns: int,
        count: int,
        sum: float,
        min: float,
        max: float,
        hdr_b64: str,
    ) -> None:
        """Merge another instance's histogram window; ValueError if hdr_b64 is invalid."""
    def flush(self, now_ns: int, force: bool = False) -> list[WindowDict]:
        """Close windows ending at or before now_ns - grace_ns (all if force)."""
    @property
    def late_events(self) -> int: ...
    @property
    def overflow_events(self) -> int: ...
    @property
    def series_count(self) -> int: ...
    @property
    def open_windows(self) -> int:
        """Windows holding events not yet flushed."""
    @property
    def watermark(self) -> int:
        """End of the newest closed window in ns (very negative before any flush)."""

# StatsD / DogStatsD parsing (rust/python/src/statsd.rs over revopipe_core::statsd).

StatsdColumns = tuple[
    tuple[str, ...],
    bytes,
    bytes,
    tuple[str, ...],
    bytes,
    tuple[tuple[tuple[str, str], ...], ...],
]
"""(names, kinds, values, units, timestamps, tags): values are native float64 bytes and
timestamps native int64 nanosecond bytes, for `array('d'/'q').frombytes`."""

class StatsdParser:
    """Parses StatsD and DogStatsD lines, a whole buffer of datagrams per call, keeping
    per-series state (counter totals, gauge values) for at most max_series series.

    `name:value[:value...]|type[|@rate][|#k:v,k2][|c:container][|T<unix s>]` lines:
    counters (`c`) come out as cumulative totals (value / rate added per line; a 0 row
    precedes a new series' first total, consecutive totals of a series at one timestamp
    are coalesced), gauges (`g`, `+n`/`-n` relative), timers (`ms`, histogram, unit "ms")
    and histograms / distributions (`h`, `d`, unit "1"; a value sampled at rate r repeated
    round(1/r) times, at most 1000), sets (`s`, each member as the integer
    xxh3_64(member) >> 11). `|c:` becomes the tag `container.id`. Malformed lines, events
    (`_e{`) and service checks (`_sc|`) are counted and skipped; lines of new series past
    max_series are dropped and counted. Raises ValueError if max_series < 1.
    """

    def __init__(self, max_series: int = 100_000) -> None: ...
    def parse(self, data: bytes, now_ns: int) -> StatsdColumns:
        """Parse every newline-separated line of data (rows without |T get now_ns) into
        metric batch columns. Never raises for bad input. GIL released while parsing."""
    def take_errors(self) -> list[str]:
        """Messages ("reason: 'line excerpt'") of the first malformed lines (at most 5)
        since the previous call."""
    @property
    def lines(self) -> int:
        """Non-empty lines seen; each is one of the four kinds below."""
    @property
    def metric_lines(self) -> int: ...
    @property
    def malformed_lines(self) -> int: ...
    @property
    def unsupported_lines(self) -> int:
        """DogStatsD events and service checks."""
    @property
    def overflow_lines(self) -> int:
        """Lines of new series dropped because max_series were tracked."""
    @property
    def series_count(self) -> int: ...
    @property
    def max_series(self) -> int: ...

def read_datagrams(fd: int, max_bytes: int, max_datagrams: int = 4096) -> tuple[bytes, int]:
    """Read the datagrams queued on the non-blocking UDP socket fd, each followed by a
    newline (the form StatsdParser.parse takes), until none is left, max_datagrams were read
    or max_bytes or more were: (data, datagrams read). GIL released while reading. Raises
    OSError if the first read fails. Unix only."""

def discard_datagrams(fd: int, max_datagrams: int = 4096) -> int:
    """Read and throw away up to max_datagrams queued datagrams; how many. Unix only."""

class LoadGenerator:
    """An HTTP/1.1 load generator (http:// only) on tokio runtimes on threads of its own.

    requests: (method, url, headers, body, weight) tuples, picked at random (seeded by
    seed) in proportion to weight. model "closed": stage targets are virtual users, each
    looping request -> response -> think_time on its own keep-alive connection; latency from
    the send. model "open": targets are arrivals per second; each arrival goes to a free
    keep-alive connection (opened on demand up to max_connections, 0 = 1000), waits in a
    queue of max_connections when all are busy and is counted as dropped beyond it; latency
    from the arrival's intended time (coordinated omission corrected; from the actual send
    when the generator sent it up to 2 ms early, as it aims to). stages: (duration_s,
    target) pairs, the target ramping linearly from the previous stage's end (the first
    from start_target). timeout: seconds per request (connect + full response).
    expected_status: statuses counted as success (None: any 2xx/3xx). threads: runtime
    worker threads (0: the available cores).

    A snapshot (one per second of the run; the last may be partial) and the summary are
    dicts with: t (s since start at the end of the interval), interval (s covered; summary:
    elapsed), requests (completed, successes + errors), ok, errors {connect, timeout,
    status, read}, bytes_received (response bodies), target (users / arrivals per s at the
    end), active (users running / requests in flight; summary 0), dropped (open model),
    latency_hdr (bytes: compressed V2 HdrHistogram of latencies in microseconds, 3
    significant digits), latency {min, mean, p50, p90, p95, p99, p99_9, max} in seconds
    (0.0 without responses), status {"200": count, ...}.

    Raises ValueError naming the bad argument (request index, stage index, URL, ...).
    """

    def __init__(
        self,
        requests: Sequence[tuple[str, str, Sequence[tuple[str, str]], bytes | None, float]],
        model: str,
        stages: Sequence[tuple[float, float]],
        start_target: float = 0.0,
        max_connections: int = 0,
        think_time: float = 0.0,
        timeout: float = 10.0,
        expected_status: Sequence[int] | None = None,
        threads: int = 0,
        seed: int = 0,
    ) -> None: ...
    def start(self) -> None:
        """Start the run on a new thread; returns at once. RuntimeError if started before."""
    def next_snapshot(self, timeout: float) -> dict[str, Any] | None:
        """The next per-second snapshot, waiting up to timeout s (GIL released, Ctrl-C
        raises KeyboardInterrupt); None on timeout. Raises StopIteration once the run has
        ended and every snapshot was taken; RuntimeError before start()."""
    def stop(self) -> None:
        """End the run now and wait for its thread (GIL released); in-flight requests are
        abandoned after at most min(timeout, 1 s). Idempotent; a no-op before start()."""
    def summary(self) -> dict[str, Any]:
        """Totals over the whole run; blocks (GIL released) until it has ended."""
    @property
    def running(self) -> bool:
        """Started and not yet ended."""
