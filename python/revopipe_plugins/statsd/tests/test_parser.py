"""The Rust StatsD parser through its binding: columns that make a MetricBatch, the line
formats, and hypothesis-made garbage that is counted, never raised, and never spoils the
well-formed lines around it."""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe import MetricKind, _core
from revopipe.batch import MetricBatch

NOW = 1_800_000_000 * 10**9
C, G, H, S = MetricKind.COUNTER, MetricKind.GAUGE, MetricKind.HISTOGRAM, MetricKind.SET


def batch(parser: _core.StatsdParser, data: bytes, now: int = NOW) -> MetricBatch:
    names, kinds, values, units, timestamps, tags = parser.parse(data, now)
    v, t = array("d"), array("q")
    v.frombytes(values)
    t.frombytes(timestamps)
    return MetricBatch(names, kinds, v, units, t, tags)


def rows(b: MetricBatch) -> list[tuple[str, MetricKind, float, str, tuple[tuple[str, str], ...]]]:
    return [(m.name, m.kind, m.value, m.unit, m.tags) for m in b]


def test_every_type_into_columns() -> None:
    p = _core.StatsdParser()
    b = batch(
        p,
        b"hits:1|c\nhits:2|c|@0.5\n"
        b"queue:10|g\nqueue:-3|g\nqueue:+1|g\n"
        b"lat:12.5|ms|@0.5\n"
        b"size:1:2|h|#env:prod,canary\n"
        b"users:alice|s\nusers:alice|s",
    )
    got = rows(b)
    env = (("canary", ""), ("env", "prod"))
    assert got[:2] == [("hits", C, 0.0, "1", ()), ("hits", C, 5.0, "1", ())]
    assert got[2:5] == [("queue", G, v, "1", ()) for v in (10.0, 7.0, 8.0)]
    assert got[5:7] == [("lat", H, 12.5, "ms", ())] * 2
    assert got[7:9] == [("size", H, 1.0, "1", env), ("size", H, 2.0, "1", env)]
    assert got[9][1] is S and got[9][2] == got[10][2]
    assert list(b.timestamps) == [NOW] * len(b)
    assert (p.lines, p.metric_lines, p.malformed_lines, p.series_count) == (9, 9, 0, 5)
    # the series' objects are shared between rows and between calls
    again = batch(p, b"hits:1|c")
    assert again.names[0] is b.names[0]
    assert list(again.values) == [6.0]


def test_dogstatsd_timestamp_and_container() -> None:
    p = _core.StatsdParser()
    b = batch(p, b"t:1|g|c:abc|T1700000000\nu:2|g")
    assert list(b.timestamps) == [1_700_000_000 * 10**9, NOW]
    assert b.tags[0] == (("container.id", "abc"),)


def test_the_columns_feed_the_aggregator() -> None:
    p = _core.StatsdParser()
    b = batch(p, b"lat:1:2:3:4|ms\nreq:1|c\nreq:1|c")
    agg = _core.Aggregator(window_ns=10 * 10**9)
    agg.ingest(b.names, b.kinds, b.values, b.units, b.timestamps, b.tags)
    out = {r["name"]: r for r in agg.flush(NOW, force=True)}
    assert out["lat"]["count"] == 4 and out["lat"]["sum"] == 10.0
    assert out["req"]["increase"] == 2.0


def test_malformed_lines_name_the_reason() -> None:
    p = _core.StatsdParser()
    b = batch(p, b"ok:1|g\nno colon\nx:1|q\nd:-1|c\n_e{1,1}:a|b\n_sc|c|0\nok:2|g")
    assert list(b.values) == [1.0, 2.0]
    assert (p.malformed_lines, p.unsupported_lines) == (3, 2)
    errors = p.take_errors()
    assert len(errors) == 3
    assert "no ':'" in errors[0] and '"no colon"' in errors[0]
    assert 'unknown metric type "q"' in errors[1]
    assert "negative counter increment" in errors[2]
    assert p.take_errors() == []


def test_overflow_and_bad_arguments() -> None:
    p = _core.StatsdParser(max_series=1)
    b = batch(p, b"a:1|g\nb:1|g\na:2|g")
    assert list(b.names) == ["a", "a"]
    assert (p.overflow_lines, p.series_count, p.max_series) == (1, 1, 1)
    with pytest.raises(ValueError, match="max_series"):
        _core.StatsdParser(max_series=0)
    with pytest.raises(TypeError):
        p.parse("a:1|g", NOW)  # type: ignore[arg-type]


# --- hypothesis -------------------------------------------------------------------------

# After splitting on \n, a line is trimmed of these (Rust's ASCII whitespace).
_TRIM = b" \t\r\x0c"

# Bytes without ':' and '_' can never be a metric line, an event or a service check: every
# non-empty line of them is malformed.
noise = st.binary(max_size=40).map(lambda b: b.replace(b":", b"").replace(b"_", b""))


@st.composite
def good_line(draw: st.DrawFn, i: int) -> tuple[bytes, float]:
    # absolute gauges (a leading sign would make the value relative)
    value = draw(st.integers(0, 10**6)) / 4
    text = draw(st.sampled_from([repr(value), f"{value:.17e}"]))
    tags = draw(st.sampled_from(["", "|#env:prod", "|#a,b:c"]))
    return f"ok.{i}:{text}|g{tags}".encode(), value


@st.composite
def mixed(draw: st.DrawFn) -> tuple[list[bytes], dict[str, float], int]:
    pieces: list[bytes] = []
    expected: dict[str, float] = {}
    malformed = 0
    for i in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            line, value = draw(good_line(i))
            pieces.append(line)
            expected[f"ok.{i}"] = value
        else:
            junk = draw(noise)
            pieces.append(junk)
            malformed += sum(1 for part in junk.split(b"\n") if part.strip(_TRIM))
    return pieces, expected, malformed


@settings(max_examples=300, deadline=None)
@given(mixed())
def test_noise_is_counted_and_good_lines_still_parse(
    case: tuple[list[bytes], dict[str, float], int],
) -> None:
    pieces, expected, malformed = case
    p = _core.StatsdParser()
    b = batch(p, b"\n".join(pieces))
    assert {m.name: m.value for m in b} == expected
    assert p.malformed_lines == malformed
    assert p.metric_lines == len(expected)
    assert len(p.take_errors()) == min(malformed, 5)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20), st.integers(1, 5))
def test_any_bytes_never_raise(chunks: list[bytes], max_series: int) -> None:
    p = _core.StatsdParser(max_series=max_series)
    data = b"\n".join([*chunks, b"sentinel:3|ms"])
    b = batch(p, data)
    assert p.lines == p.metric_lines + p.malformed_lines + p.unsupported_lines + p.overflow_lines
    assert all(math.isfinite(v) for v in b.values)
    assert set(b.kinds) <= {0, 1, 2, 3}
    if p.overflow_lines == 0:
        assert rows(b)[-1] == ("sentinel", H, 3.0, "ms", ())
