"""Prometheus exposition: OpenTelemetry names to Prometheus names, and the pieces of the text
formats (Prometheus text 0.0.4 and OpenMetrics 1.0).

Names follow OpenTelemetry's "Prometheus and OpenMetrics compatibility" specification, as
the OpenTelemetry Collector and Prometheus's own OTLP ingestion apply it, so a series that
reaches Prometheus through revopipe and one that arrives over OTLP get the same name:

- runs of characters outside ``[a-zA-Z0-9:]`` become one ``_`` (none at either end), and a
  leading digit gets a ``_`` prefix: ``http.server.request.duration`` →
  ``http_server_request_duration``;
- the unit's word is appended unless the name already ends with it (``s`` → ``_seconds``,
  ``By`` → ``_bytes``, ``ms`` → ``_milliseconds``; ``x/y`` → ``_x_per_y``); annotations in
  braces such as ``{request}`` add nothing;
- a counter ends in ``_total``;
- a gauge of unit ``1`` whose name ends in ``.utilization`` ends in ``_ratio``. The
  specification asks ``_ratio`` for every gauge of unit ``1``, but ``1`` is revopipe's
  default unit (any dimensionless value, such as a queue depth), so only the OpenTelemetry
  semantic conventions' ratio names get it.

Label names: characters outside ``[a-zA-Z0-9_]`` become ``_``; a leading digit gets a
``key_`` prefix and a leading ``_`` a ``key`` prefix (Prometheus reserves ``__`` names);
tags that end up with the same label name are joined with ``;`` in the order of their
original keys, as the specification says.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence

from revopipe.events import MetricKind

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class Format(enum.Enum):
    """An exposition format a scraper can ask for."""

    TEXT = "text"
    OPENMETRICS = "openmetrics"

    @property
    def content_type(self) -> str:
        return OPENMETRICS_CONTENT_TYPE if self is Format.OPENMETRICS else TEXT_CONTENT_TYPE


# -- names ------------------------------------------------------------------------------

_NAME_SEPARATORS = re.compile(r"[^a-zA-Z0-9:]+")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_UNIT_ANNOTATION = re.compile(r"\{[^}]*\}")

UNIT_WORDS: dict[str, str] = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
"""UCUM unit -> the Prometheus word appended to a name (the specification's table)."""

PER_UNIT_WORDS: dict[str, str] = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}
"""The unit after ``/`` -> its word in ``_per_<word>``."""


def _tokens(text: str) -> list[str]:
    return [t for t in _NAME_SEPARATORS.split(text) if t]


def _ends_with(tokens: Sequence[str], suffix: Sequence[str]) -> bool:
    n = len(suffix)
    return 0 < n <= len(tokens) and list(tokens[-n:]) == list(suffix)


def unit_words(unit: str) -> tuple[list[str], list[str]]:
    """The name tokens a unit contributes: (main, per) — ``By/s`` → (["bytes"], ["per",
    "second"]); ``{request}`` → ([], [])."""
    unit = _UNIT_ANNOTATION.sub("", unit).strip()
    main, _, per = unit.partition("/")
    main, per = main.strip(), per.strip()
    main_tokens = _tokens(UNIT_WORDS.get(main, main)) if main else []
    per_tokens = _tokens(PER_UNIT_WORDS.get(per, per)) if per else []
    return main_tokens, (["per", *per_tokens] if per_tokens else [])


def unit_suffix(unit: str) -> str:
    """The Prometheus word(s) for a unit (``s`` → ``seconds``, ``By/s`` →
    ``bytes_per_second``, ``1`` and ``{request}`` → "")."""
    main, per = unit_words(unit)
    return "_".join(main + per)


def metric_name(name: str, unit: str, kind: MetricKind) -> str:
    """The Prometheus name of a revopipe metric: for counters the sample name (``…_total``),
    for histograms the base of ``_bucket``/``_sum``/``_count``."""
    tokens = _tokens(name)
    if kind is MetricKind.COUNTER and len(tokens) > 1 and tokens[-1] == "total":
        tokens.pop()  # appended again last, after the unit
    if not tokens:
        tokens = ["unnamed"]
    main, per = unit_words(unit)
    if main and not _ends_with(tokens, main):
        tokens += main
    if per and not _ends_with(tokens, per):
        tokens += per
    if kind is MetricKind.COUNTER:
        tokens.append("total")
    elif kind is MetricKind.GAUGE and unit.strip() == "1" and name.endswith(".utilization"):
        if tokens[-1] == "ratio" and len(tokens) > 1:
            tokens.pop()
        tokens.append("ratio")
    out = "_".join(tokens)
    return "_" + out if out[0].isdigit() else out


def label_name(key: str) -> str:
    """A tag key as a valid Prometheus label name."""
    out = _LABEL_INVALID.sub("_", key)
    if not out:
        return "key_"
    if out[0].isdigit():
        return "key_" + out
    if out[0] == "_":
        return "key" + out
    return out


def labels(
    tags: Iterable[tuple[str, str]], reserved: Sequence[str] = ()
) -> tuple[tuple[str, str], ...]:
    """Tags as sorted Prometheus label pairs. Tags whose keys sanitize to one name are
    joined with ``;`` (ordered by original key); a tag named like one of `reserved` (``le``
    on a histogram) is renamed ``exported_<name>``, as Prometheus does on a clash."""
    merged: dict[str, list[tuple[str, str]]] = {}
    for key, value in tags:
        name = label_name(key)
        if name in reserved:
            name = "exported_" + name
        merged.setdefault(name, []).append((key, value))
    out = []
    for name, pairs in merged.items():
        if len(pairs) == 1:
            out.append((name, pairs[0][1]))
        else:
            out.append((name, ";".join(v for _, v in sorted(pairs))))
    out.sort()
    return tuple(out)


# -- text pieces ------------------------------------------------------------------------

_LABEL_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_HELP_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n"})


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped (the same rule in both formats)."""
    return value.translate(_LABEL_VALUE_ESCAPES)


def escape_help(text: str, fmt: Format) -> str:
    """HELP text: OpenMetrics also escapes double quotes, the 0.0.4 format does not."""
    if fmt is Format.OPENMETRICS:
        return text.translate(_LABEL_VALUE_ESCAPES)
    return text.translate(_HELP_ESCAPES)


def label_text(pairs: Iterable[tuple[str, str]]) -> str:
    """``{a="1",b="2"}`` (names already valid), or "" for no labels."""
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def format_value(value: float) -> str:
    """A sample value both formats and Go's ParseFloat read back exactly."""
    if value != value:
        return "NaN"
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    return repr(float(value))


def format_le(bound: float) -> str:
    """A bucket bound as Go (and so Prometheus and prometheus_client) writes it: the
    canonical form OpenMetrics requires, so one bound is one `le` series in any format."""
    if bound == math.inf:
        return "+Inf"
    if bound == -math.inf:
        return "-Inf"
    s = repr(float(bound))
    dot = s.find(".")
    # Go's shortest form uses an exponent from 1e6 on ("1e+06"), Python's repr only from
    # 1e16; prometheus_client.utils.floatToGoString makes the same correction.
    if bound > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def format_timestamp_ns(ns: int) -> str:
    """Seconds with nanosecond digits, exact (an exemplar's timestamp)."""
    sec, frac = divmod(ns, 1_000_000_000)
    return f"{sec}.{frac:09d}".rstrip("0").rstrip(".") if frac else str(sec)


def exemplar_text(trace_id: str, span_id: str, value: float, timestamp_ns: int) -> str:
    """`` # {trace_id="…",span_id="…"} value timestamp`` to append to a bucket line
    (OpenMetrics only)."""
    return (
        f' # {{trace_id="{escape_label_value(trace_id)}",span_id="{escape_label_value(span_id)}"}}'
        f" {format_value(value)} {format_timestamp_ns(timestamp_ns)}"
    )


# -- content negotiation ----------------------------------------------------------------


def negotiate(accept: str | None) -> Format:
    """The format to serve for an ``Accept`` header: OpenMetrics 1.0 when the scraper ranks
    ``application/openmetrics-text`` (no version or 1.x) at least as high as the text
    format, else Prometheus text 0.0.4 (also for a missing or unusable header)."""
    if not accept:
        return Format.TEXT
    best: tuple[float, int, Format] | None = None
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        q = 1.0
        version = None
        for param in params:
            key, _, value = param.partition("=")
            key = key.strip().lower()
            value = value.strip().strip('"')
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif key == "version":
                version = value
        if q <= 0:
            continue
        if media == "application/openmetrics-text":
            if version is not None and not version.startswith("1."):
                continue
            fmt = Format.OPENMETRICS
        elif media == "text/plain":
            if version is not None and version != "0.0.4":
                continue
            fmt = Format.TEXT
        elif media in ("*/*", "text/*"):
            fmt = Format.TEXT
        else:
            continue
        # the highest q wins; among equals the one listed first
        candidate = (q, -position, fmt)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best is not None else Format.TEXT


# -- bucket bounds ----------------------------------------------------------------------

SECONDS_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""OpenTelemetry's advice for `http.server.request.duration` (seconds)."""

GENERIC_BUCKETS: tuple[float, ...] = (
    0.0,
    5.0,
    10.0,
    25.0,
    50.0,
    75.0,
    100.0,
    250.0,
    500.0,
    750.0,
    1000.0,
    2500.0,
    5000.0,
    7500.0,
    10000.0,
)
"""The OpenTelemetry SDK's default explicit bounds, for units without better ones."""

BYTES_BUCKETS: tuple[float, ...] = tuple(float(4**k) for k in range(3, 14))
"""64 B to 64 MiB by powers of four: request and payload sizes."""

_TIME_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def default_buckets(unit: str) -> tuple[float, ...]:
    """Bucket bounds for a histogram of this unit when the config names none."""
    scale = _TIME_SCALE.get(unit)
    if scale is not None:
        # rounded so that 0.005 s becomes 5.0 ms, not 5.000000000000001
        return tuple(float(f"{b * scale:.12g}") for b in SECONDS_BUCKETS)
    if unit == "By":
        return BYTES_BUCKETS
    return GENERIC_BUCKETS


def check_buckets(bounds: Sequence[float]) -> tuple[float, ...]:
    """Bounds as a tuple, or ValueError unless finite, strictly ascending and not empty
    (+Inf is always added at render time)."""
    out = tuple(float(b) for b in bounds)
    if not out:
        raise ValueError("bucket bounds are empty; give at least one bound, e.g. [0.1, 1, 10]")
    for i, b in enumerate(out):
        if not math.isfinite(b):
            raise ValueError(f"bucket bound {b} at index {i} is not finite; +Inf is implicit")
        if i and b <= out[i - 1]:
            raise ValueError(
                f"bucket bounds must be strictly ascending: {out[i - 1]} then {b} at index {i}"
            )
    return out
