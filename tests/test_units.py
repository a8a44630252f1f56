import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revopipe.config.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("250ms", 0.25),
        ("5m", 300),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1.5s", 1.5),
        ("100us", 1e-4),
        (" 3s ", 3),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad", ["", "10", "s", "10x", "ten seconds", "5m3", "-1s", 10, 1.5, None, True]
)
def test_bad_durations_name_the_expected_form(bad: object) -> None:
    with pytest.raises(ValueError, match="duration string such as"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 * 2**20),
        ("10MB", 10**7),
        ("1GiB", 2**30),
        ("512", 512),
        (512, 512),
        ("1.5KiB", 1536),
        ("2 kb", 2000),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "-5MiB", -1, "5 parsecs", True, 1.5])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="size such as"):
        parse_size(bad)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h"]))
def test_duration_reference(n: int, unit: str) -> None:
    factor = {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    assert parse_duration(f"{n}{unit}") == pytest.approx(n * factor)


@given(st.text(max_size=12))
def test_duration_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= 0


@given(st.floats(min_value=0.001, max_value=1e6, allow_nan=False))
def test_format_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-5)
