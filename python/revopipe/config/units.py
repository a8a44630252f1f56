"""Durations ("10s", "5m", "1h30m", "250ms") and sizes ("64MiB", "10MB") as config values."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")
_DURATION_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_FACTORS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}

DURATION_HINT = "a duration string such as '500ms', '10s', '5m' or '1h30m'"
SIZE_HINT = "a size such as '64MiB', '10MB' or a whole number of bytes"


def parse_duration(value: object) -> float:
    """Seconds in a duration string. Bare numbers are refused: '10' could mean seconds or
    milliseconds, and a unit in the file removes the doubt."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected {DURATION_HINT}, got {type(value).__name__} {value!r}")
    text = value.strip().replace(" ", "")
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
    return total


def parse_size(value: object) -> int:
    """Bytes in a size string; a plain integer is bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected {SIZE_HINT}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected {SIZE_HINT}, got a negative number {value}")
        return value
    if isinstance(value, str):
        m = _SIZE.fullmatch(value.strip())
        if m:
            factor = _SIZE_FACTORS[(m.group(2) or "B").lower()]
            return int(float(m.group(1)) * factor)
    raise ValueError(f"expected {SIZE_HINT}, got {value!r}")


def format_duration(seconds: float) -> str:
    """The shortest plain form `parse_duration` reads back: '250ms', '10s', '1000000s'."""
    if seconds and seconds < 1:
        return _plain(seconds * 1000) + "ms"
    return _plain(seconds) + "s"


def _plain(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
"""A config field holding seconds, written in the file as a duration string."""

Size = Annotated[int, BeforeValidator(parse_size)]
"""A config field holding bytes, written in the file as a size string."""
