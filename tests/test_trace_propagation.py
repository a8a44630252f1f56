"""W3C trace context: traceparent/tracestate parsing against a simple reference, round
trips, rejection of everything the specification rejects, and never raising."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from revopipe import trace
from revopipe.trace import SpanContext, extract, extract_asgi, inject, parse_traceparent

SPEC_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HEX = "0123456789abcdef"


@pytest.fixture(autouse=True)
def fresh_tracing() -> Iterator[None]:
    trace.configure(sample_ratio=1.0, always_on_error=True, max_buffered=10_000)
    trace.clear()
    yield
    trace.clear()


def reference_parse(value: str) -> tuple[int, int, int] | None:
    """The specification's rules written the plain way."""
    v = value.strip(" \t")
    parts = v.split("-")
    if len(parts) < 4:
        return None
    version, tid, pid, flags = parts[:4]

    def lchex(s: str, n: int) -> bool:
        return len(s) == n and all(c in HEX for c in s)

    if not (lchex(version, 2) and lchex(tid, 32) and lchex(pid, 16) and lchex(flags, 2)):
        return None
    if version == "ff" or (version == "00" and len(parts) != 4):
        return None
    if int(tid, 16) == 0 or int(pid, 16) == 0:
        return None
    return int(tid, 16), int(pid, 16), int(flags, 16)


ids128 = st.integers(1, 2**128 - 1)
ids64 = st.integers(1, 2**64 - 1)


@given(ids128, ids64, st.booleans())
def test_format_then_parse_round_trips(trace_id: int, span_id: int, sampled: bool) -> None:
    text = trace.format_traceparent(trace_id, span_id, sampled)
    assert len(text) == 55
    assert parse_traceparent(text) == (trace_id, span_id, int(sampled))
    assert reference_parse(text) == parse_traceparent(text)


def mutate(draw: st.DrawFn) -> str:
    base = draw(
        st.builds(
            lambda v, t, p, f: f"{v:02x}-{t:032x}-{p:016x}-{f:02x}",
            st.sampled_from([0, 0, 0, 1, 0xFE, 0xFF]),
            st.one_of(st.just(0), ids128),
            st.one_of(st.just(0), ids64),
            st.integers(0, 255),
        )
    )
    chars = list(base)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "upper", "suffix"]))
        i = draw(st.integers(0, max(len(chars) - 1, 0)))
        if op == "replace" and chars:
            chars[i] = draw(st.sampled_from("0aF-xz \t\n\u00e9"))
        elif op == "insert":
            chars.insert(i, draw(st.sampled_from("0a-F ")))
        elif op == "delete" and chars:
            del chars[i]
        elif op == "upper":
            chars = list("".join(chars).upper())
        elif op == "suffix":
            chars.extend(draw(st.sampled_from(["-", "-extra", "x", " ", "-01-00"])))
    return "".join(chars)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.composite(mutate)(), st.text(max_size=80)))
@example(SPEC_EXAMPLE)
@example(SPEC_EXAMPLE.upper())
@example("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
@example("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")
@example("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
@example("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")
@example("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x")
@example("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-")
@example(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t")
def test_parse_agrees_with_the_reference_and_never_raises(text: str) -> None:
    assert parse_traceparent(text) == reference_parse(text)
    ctx = extract({"traceparent": text})
    ref = reference_parse(text)
    if ref is None:
        assert ctx is None
    else:
        assert ctx == SpanContext(ref[0], ref[1], bool(ref[2] & 1))


def test_what_the_specification_rejects_is_rejected() -> None:
    t, p = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    assert parse_traceparent(SPEC_EXAMPLE) == (int(t, 16), int(p, 16), 1)
    for bad in [
        f"00-{t.upper()}-{p}-01",  # uppercase hex
        f"00-{'0' * 32}-{p}-01",  # all-zero trace id
        f"00-{t}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{t}-{p}-01",  # forbidden version
        f"00-{t}-{p}-01-",  # version 00 is exactly 55 characters
        f"00-{t[:-1]}-{p}-01",  # short trace id
        f"00-{t}0-{p}-01",  # long trace id
        f"00-{t}-{p[:-1]}-01",
        f"00-{t}-{p}-1",
        f"0-{t}-{p}-01",
        f"00-{t}-{p}-0g",  # not hex
        f"00_{t}_{p}_01",
        f"01-{t}-{p}-01x",  # a future version still needs '-' after 55 characters
        "",
        "garbage",
    ]:
        assert parse_traceparent(bad) is None, bad
    # a future version is read by its first four fields
    assert parse_traceparent(f"cc-{t}-{p}-00-whatever") == (int(t, 16), int(p, 16), 0)
    assert parse_traceparent(f"01-{t}-{p}-03") == (int(t, 16), int(p, 16), 3)


# ------------------------------------------------------------------------------ tracestate

key_chars = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
simple_keys = st.builds(
    lambda a, rest: a + rest,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text(key_chars, max_size=20),
)
tenant_keys = st.builds(
    lambda t, s: f"{t}@{s}",
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10),
    st.builds(lambda a, r: a + r, st.sampled_from("abcxyz"), st.text(key_chars, max_size=13)),
)
value_chars = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=")
values = st.text(value_chars, min_size=1, max_size=40).filter(lambda v: v[-1] != " ")


@given(
    st.lists(
        st.tuples(st.one_of(simple_keys, tenant_keys), values),
        max_size=32,
        unique_by=lambda kv: kv[0],
    ),
    st.sampled_from([",", ", ", " ,\t", ",,"]),
)
def test_valid_tracestate_is_kept_verbatim(members: list[tuple[str, str]], sep: str) -> None:
    state = sep.join(f"{k}={v}" for k, v in members)
    assert trace.valid_tracestate(state)
    ctx = extract({"traceparent": SPEC_EXAMPLE, "tracestate": state})
    assert ctx is not None
    assert ctx.tracestate == state.strip(" \t")
    # and it leaves with a child span unchanged
    with trace.span("child", parent=ctx):
        out = inject({})
    if ctx.tracestate:
        assert out["tracestate"] == ctx.tracestate
    else:
        assert "tracestate" not in out


def test_invalid_tracestate_is_dropped_and_the_traceparent_kept() -> None:
    ok = [f"k{i}=v{i}" for i in range(32)]
    assert trace.valid_tracestate(",".join(ok))
    assert trace.valid_tracestate(" a=1 2 ,\tb=x ")  # spaces around members are allowed
    for bad in [
        ",".join([*ok, "k32=v"]),  # 33 members
        "a=1,a=2",  # a key twice
        "Upper=1",  # keys are lowercase
        "a=",  # empty value
        "novalue",
        "a=b=c",
        "a=\u00e9",
        "1a=x",  # simple keys start with a letter
        f"{'a' * 257}=x",
    ]:
        assert not trace.valid_tracestate(bad), bad
        ctx = extract({"traceparent": SPEC_EXAMPLE, "tracestate": bad})
        assert ctx is not None and ctx.tracestate == ""


def test_tracestate_is_not_read_without_a_valid_traceparent() -> None:
    assert extract({"traceparent": "junk", "tracestate": "a=1"}) is None
    assert extract({"tracestate": "a=1"}) is None


# ------------------------------------------------------------------------------ header shapes


def test_extract_reads_every_header_shape() -> None:
    want = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, "a=1,b=2")
    shapes: list[object] = [
        {"traceparent": SPEC_EXAMPLE, "tracestate": "a=1,b=2"},
        {"TraceParent": SPEC_EXAMPLE, "TraceState": "a=1,b=2"},  # plain dict, other case
        httpx.Headers(
            [("traceparent", SPEC_EXAMPLE), ("tracestate", "a=1"), ("tracestate", "b=2")]
        ),
        Headers(raw=[(b"traceparent", SPEC_EXAMPLE.encode()), (b"tracestate", b"a=1,b=2")]),
        [("Traceparent", SPEC_EXAMPLE), ("tracestate", "a=1"), ("tracestate", "b=2")],
        [(b"traceparent", SPEC_EXAMPLE.encode()), (b"tracestate", b"a=1,b=2")],
    ]
    for headers in shapes:
        got = extract(headers)  # type: ignore[arg-type]
        assert got is not None, headers
        # httpx joins repeated headers with ", ": the same list
        assert (got.trace_id, got.span_id, got.sampled) == (want.trace_id, want.span_id, True)
        assert got.tracestate.replace(" ", "") == "a=1,b=2"
    asgi = [(b"host", b"x"), (b"traceparent", SPEC_EXAMPLE.encode()), (b"tracestate", b"a=1")]
    assert extract_asgi(asgi) == SpanContext(want.trace_id, want.span_id, True, "a=1")
    assert extract_asgi([(b"host", b"x")]) is None


def test_two_traceparent_headers_are_invalid() -> None:
    other = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    assert extract([("traceparent", SPEC_EXAMPLE), ("traceparent", other)]) is None
    assert extract_asgi([(b"traceparent", SPEC_EXAMPLE.encode())] * 2) is None
    assert extract(httpx.Headers([("traceparent", SPEC_EXAMPLE), ("traceparent", other)])) is None


header_values = st.one_of(st.text(max_size=70), st.binary(max_size=70), st.none(), st.integers())


@settings(max_examples=300)
@given(
    st.one_of(
        st.dictionaries(
            st.one_of(st.sampled_from(["traceparent", "tracestate"]), st.text(max_size=12)),
            header_values,
            max_size=4,
        ),
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from([b"traceparent", "tracestate"]), st.binary(max_size=12)),
                header_values,
            ),
            max_size=4,
        ),
        st.none(),
        st.integers(),
        st.text(max_size=20),
    )
)
def test_extract_never_raises(headers: object) -> None:
    got = extract(headers)  # type: ignore[arg-type]
    assert got is None or isinstance(got, SpanContext)
    if isinstance(headers, list):
        got = extract_asgi(headers)  # type: ignore[arg-type]
        assert got is None or isinstance(got, SpanContext)


# ------------------------------------------------------------------------------ inject


def test_inject_writes_the_current_or_given_span_and_nothing_without_one() -> None:
    assert inject({}) == {}
    with trace.span("outgoing") as s:
        h = inject({"accept": "*/*"})
    assert h == {"accept": "*/*", "traceparent": f"00-{s.trace_id_hex}-{s.span_id_hex}-01"}
    ctx = SpanContext(5, 6, False, "v=1")
    assert inject({}, ctx) == {"traceparent": f"00-{5:032x}-{6:016x}-00", "tracestate": "v=1"}
    hx = httpx.Headers()
    inject(hx, s)
    assert extract(hx) == s.context


def test_a_continued_trace_keeps_its_id_and_its_caller_as_parent() -> None:
    caller = extract({"traceparent": SPEC_EXAMPLE, "tracestate": "congo=t61rcWkgMzE"})
    assert caller is not None
    with trace.span("handler", parent=caller, kind="server") as s:
        out = inject({})
    parsed = parse_traceparent(out["traceparent"])
    assert parsed == (caller.trace_id, s.span_id, 1)
    assert out["tracestate"] == "congo=t61rcWkgMzE"
    (e,) = trace.drain()
    assert e.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert e.parent_span_id == "00f067aa0ba902b7"
