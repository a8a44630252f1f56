"""Rule condition evaluation against snapshots of aggregated values: selection, vector
matching, set operators, aggregation, error ratios, missing data and division by zero, and
a hypothesis comparison of simple conditions against a plain reference implementation."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.events import MetricKind, Tags, make_tags
from revopipe_plugins.aggregate.output import window_batch
from revopipe_plugins.alerts.rules import RuleSyntaxError, Snapshot, evaluate, parse


def T(**kw: str) -> Tags:
    return make_tags(kw)


def snap(*rows: tuple[str, dict[str, str], float]) -> Snapshot:
    return Snapshot({(name, make_tags(tags)): v for name, tags, v in rows})


def ev(text: str, s: Snapshot) -> dict[Tags, float]:
    return evaluate(parse(text), s)


CPU = snap(
    ("system.cpu.last", {"host": "a"}, 90.0),
    ("system.cpu.last", {"host": "b"}, 50.0),
    ("system.cpu.last", {"host": "c", "dc": "eu"}, 97.0),
    ("system.cpu.max", {"host": "a"}, 99.0),
    ("mem.last", {"host": "a"}, 90.0),
    ("mem.last", {"host": "b"}, 10.0),
    ("zero.last", {"host": "a"}, 0.0),
)

CASES: list[tuple[str, Snapshot, dict[Tags, float]]] = [
    ("last(system.cpu) > 80", CPU, {T(host="a"): 90.0, T(host="c", dc="eu"): 97.0}),
    ("last(system.cpu) >= 90", CPU, {T(host="a"): 90.0, T(host="c", dc="eu"): 97.0}),
    ("last(system.cpu) == 50", CPU, {T(host="b"): 50.0}),
    ("max(system.cpu) > 80", CPU, {T(host="a"): 99.0}),
    ('last(system.cpu{host="a"}) > 0', CPU, {T(host="a"): 90.0}),
    ('last(system.cpu{host!="a"}) > 0', CPU, {T(host="b"): 50.0, T(host="c", dc="eu"): 97.0}),
    # regexes are anchored: "a|b" does not match "ab", "." does not match "eu"
    ('last(system.cpu{host=~"a|b"}) > 0', CPU, {T(host="a"): 90.0, T(host="b"): 50.0}),
    ('last(system.cpu{host!~"a|b"}) > 0', CPU, {T(host="c", dc="eu"): 97.0}),
    ('last(system.cpu{dc=~"."}) > 0', CPU, {}),
    # an absent label reads as ""
    ('last(system.cpu{dc=""}) > 0', CPU, {T(host="a"): 90.0, T(host="b"): 50.0}),
    # a number on the left: the series' value is kept
    ("80 < last(system.cpu)", CPU, {T(host="a"): 90.0, T(host="c", dc="eu"): 97.0}),
    # one-to-one matching: host c has no mem, so it drops out
    ("last(system.cpu) + last(mem)", CPU, {T(host="a"): 180.0, T(host="b"): 60.0}),
    ("last(system.cpu) - last(mem) > 30", CPU, {T(host="b"): 40.0}),
    (
        "last(system.cpu) * 2 / 4",
        CPU,
        {T(host="a"): 45.0, T(host="b"): 25.0, T(host="c", dc="eu"): 48.5},
    ),
    # both sides series: the left value is kept
    ("last(system.cpu) > last(mem)", CPU, {T(host="b"): 50.0}),
    # division by zero drops the series, not the whole result
    ("last(mem) / last(zero)", CPU, {}),
    ("last(mem) / (last(mem) - 10) > 0", CPU, {T(host="a"): 90.0 / 80.0}),
    ("last(mem) / 0 > 0", CPU, {}),
    # set operators
    ("last(system.cpu) > 80 and last(mem) > 50", CPU, {T(host="a"): 90.0}),
    ("last(system.cpu) > 80 unless last(mem) > 50", CPU, {T(host="c", dc="eu"): 97.0}),
    (
        "last(mem) < 50 or last(system.cpu) > 0",
        CPU,
        {T(host="b"): 10.0, T(host="a"): 90.0, T(host="c", dc="eu"): 97.0},
    ),
    # aggregation
    ("sum by (dc) (last(system.cpu))", CPU, {T(): 140.0, T(dc="eu"): 97.0}),
    ("max by () (last(system.cpu)) > 90", CPU, {T(): 97.0}),
    ("min without (host) (last(system.cpu))", CPU, {T(): 50.0, T(dc="eu"): 97.0}),
    ("avg without (host, dc) (last(system.cpu)) > 78", CPU, {T(): 79.0}),
    # missing data is no result, not an error
    ("last(nothing) > 0", CPU, {}),
    ("last(nothing) > 0 or last(mem) > 50", CPU, {T(host="a"): 90.0}),
    ("last(system.cpu) + last(nothing)", CPU, {}),
    ("p99(system.cpu) > 0", CPU, {}),
]


@pytest.mark.parametrize(("text", "s", "want"), CASES, ids=[c[0] for c in CASES])
def test_evaluates(text: str, s: Snapshot, want: dict[Tags, float]) -> None:
    assert ev(text, s) == pytest.approx(want)


REQ = snap(
    # a histogram: .count is the number of requests (its .sum is durations, not requests)
    ("http.dur.count", {"route": "/a", "status": "200"}, 90.0),
    ("http.dur.count", {"route": "/a", "status": "500"}, 6.0),
    ("http.dur.count", {"route": "/a", "status": "503"}, 4.0),
    ("http.dur.sum", {"route": "/a", "status": "500"}, 1234.0),
    ("http.dur.count", {"route": "/b", "status": "200"}, 50.0),
    ("http.dur.count", {"route": "/c", "status": "200"}, 0.0),
    # counters: increase in .sum
    ("errors.sum", {"service": "api", "kind": "timeout"}, 3.0),
    ("errors.sum", {"service": "api", "kind": "refused"}, 1.0),
    ("requests.sum", {"service": "api"}, 40.0),
    ("requests.sum", {"service": "web"}, 10.0),
)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        # /b had no 5xx series: ratio 0, not missing; /c had no requests: no result
        (
            'error_ratio(http.dur{status=~"5.."}, http.dur)',
            {T(route="/a"): 0.1, T(route="/b"): 0.0},
        ),
        ('error_ratio(http.dur{status=~"5.."}, http.dur) > 0.05', {T(route="/a"): 0.1}),
        (
            'error_ratio(http.dur{status=~"5..", route="/a"}, http.dur{route="/a"})',
            {T(): 0.1},
        ),
        # labels the numerator constrains (kind) are summed away on both sides
        (
            'error_ratio(errors{kind=~".+"}, requests)',
            {T(service="api"): 0.1, T(service="web"): 0.0},
        ),
        ('error_ratio(errors{kind="timeout"}, requests) > 0.05', {T(service="api"): 0.075}),
        ("error_ratio(nothing, requests)", {T(service="api"): 0.0, T(service="web"): 0.0}),
        ("error_ratio(errors, nothing)", {}),
    ],
)
def test_error_ratio(text: str, want: dict[Tags, float]) -> None:
    assert ev(text, REQ) == pytest.approx(want)


def test_snapshot_from_batches_keeps_the_latest_row() -> None:
    b1 = MetricBatchBuilder(default_ts=1)
    b1.add("m.last", 1.0, tags={"h": "a"})
    b1.add("m.last", 2.0, tags={"h": "b"})
    b2 = MetricBatchBuilder(default_ts=2)
    b2.add("m.last", 5.0, tags={"h": "a"})
    s = Snapshot.from_batches([Batch(b1.build()), b2.build()])
    assert dict(s) == {("m.last", T(h="a")): 5.0, ("m.last", T(h="b")): 2.0}
    assert len(s) == 2
    assert ev("last(m) > 1", s) == {T(h="a"): 5.0, T(h="b"): 2.0}


def test_cached_selections_follow_updates_and_resist_mutation() -> None:
    s = snap(("m.last", {"h": "a"}, 1.0))
    got = ev("last(m)", s)
    got[T(h="zzz")] = 9.0  # the caller's copy, not the snapshot's cache
    assert ev("last(m)", s) == {T(h="a"): 1.0}
    b = MetricBatchBuilder(default_ts=5)
    b.add("m.last", 7.0, tags={"h": "b"})
    s.update(b.build())
    assert ev("last(m)", s) == {T(h="a"): 1.0, T(h="b"): 7.0}
    assert ev('last(m{h="b"}) > 2', s) == {T(h="b"): 7.0}


def test_expire_forgets_series_that_stopped_reporting() -> None:
    b1 = MetricBatchBuilder(default_ts=100)
    b1.add("m.last", 1.0, tags={"h": "a"})
    b1.add("m.last", 2.0, tags={"h": "b"})
    b1.add("n.last", 3.0)
    b2 = MetricBatchBuilder(default_ts=200)
    b2.add("m.last", 5.0, tags={"h": "a"})
    s = Snapshot.from_batches([b1.build(), b2.build()])
    assert s.expire(150) == 2
    assert dict(s) == {("m.last", T(h="a")): 5.0}
    assert ev("last(m) > 0 or last(n) > 0", s) == {T(h="a"): 5.0}
    assert s.expire(150) == 0
    assert s.expire(201) == 1
    assert ev("last(m) > 0", s) == {}


def test_deep_nesting_is_a_syntax_error() -> None:
    with pytest.raises(RuleSyntaxError, match="nested too deeply"):
        parse("(" * 5000 + "last(x)" + ")" * 5000)


def test_names_match_the_aggregate_processor_output() -> None:
    """The statistics the language names are the rows `aggregate` really emits."""
    base = {"unit": "s", "start_ns": 0, "end_ns": 10_000_000_000, "hdr": None}
    results = [
        {
            **base,
            "name": "http.dur",
            "tags": T(route="/a"),
            "kind": MetricKind.HISTOGRAM,
            "count": 20,
            "sum": 10.0,
            "min": 0.1,
            "max": 3.0,
            "percentiles": [(50, 0.4), (99, 2.5), (99.9, 2.9)],
        },
        {
            **base,
            "name": "reqs",
            "tags": T(),
            "kind": MetricKind.COUNTER,
            "increase": 30.0,
            "rate": 3.0,
        },
        {
            **base,
            "name": "cpu",
            "tags": T(),
            "kind": MetricKind.GAUGE,
            "last": 81.0,
            "min": 1.0,
            "max": 99.0,
        },
    ]
    s = Snapshot.from_batches([window_batch(results, snapshots=False)])
    a = T(route="/a")
    assert ev("p99(http.dur) > 2", s) == {a: 2.5}
    assert ev("p99.9(http.dur) > 2", s) == {a: 2.9}
    assert ev("mean(http.dur)", s) == {a: 0.5}
    assert ev("count(http.dur) / 10 == rate(http.dur) * 1", s) == {a: 2.0}
    assert ev("max(http.dur) >= 3", s) == {a: 3.0}
    assert ev("rate(reqs) > 2 and sum(reqs) > 20", s) == {(): 3.0}
    assert ev("last(cpu) > 80 and max(cpu) > 95 unless min(cpu) > 50", s) == {(): 81.0}
    assert ev('error_ratio(http.dur{route="/a"}, http.dur)', s) == {(): 1.0}


# --- random snapshots against a reference -----------------------------------------------

METRICS = ("a", "b", "c")
HOSTS = ("h1", "h2", "h3")
Ref = Callable[[dict[tuple[str, Tags], float]], dict[Tags, float]]

snapshots = st.dictionaries(
    st.tuples(
        st.sampled_from([f"{m}.last" for m in METRICS]),
        st.sampled_from(HOSTS).map(lambda h: (("host", h),)) | st.just(()),
    ),
    st.integers(-5, 5).map(float) | st.floats(-1e3, 1e3, allow_nan=False),
    max_size=12,
)
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda x, y: x > y,
    ">=": lambda x, y: x >= y,
    "<": lambda x, y: x < y,
    "<=": lambda x, y: x <= y,
    "==": lambda x, y: x == y,
    "!=": lambda x, y: x != y,
}


# matcher text -> what it accepts, written out plainly (absent label reads as "")
MATCHERS: dict[str, Callable[[str], bool]] = {
    'host="h1"': lambda h: h == "h1",
    'host!="h1"': lambda h: h != "h1",
    'host=""': lambda h: h == "",
    'host!=""': lambda h: h != "",
    'host=~"h[12]"': lambda h: h in ("h1", "h2"),
    'host!~"h[12]"': lambda h: h not in ("h1", "h2"),
    'host=~"h"': lambda h: False,
    'host=~".*"': lambda h: True,
}


def _series(
    values: dict[tuple[str, Tags], float], metric: str, matcher: str | None
) -> dict[Tags, float]:
    accept = MATCHERS[matcher] if matcher else (lambda h: True)
    out = {}
    for (name, tags), v in values.items():
        if name == f"{metric}.last" and accept(dict(tags).get("host", "")):
            out[tags] = v
    return out


@st.composite
def simple(draw: st.DrawFn) -> tuple[str, Ref]:
    op = draw(st.sampled_from(sorted(OPS)))
    k = draw(st.integers(-5, 5))
    m1 = draw(st.sampled_from(METRICS))
    host = draw(st.none() | st.sampled_from(sorted(MATCHERS)))
    match = "" if host is None else f"{{{host}}}"
    if draw(st.booleans()):

        def ref(values: dict[tuple[str, Tags], float]) -> dict[Tags, float]:
            return {t: v for t, v in _series(values, m1, host).items() if OPS[op](v, k)}

        return f"last({m1}{match}) {op} {k}", ref
    m2 = draw(st.sampled_from(METRICS))

    def ref_ratio(values: dict[tuple[str, Tags], float]) -> dict[Tags, float]:
        num, den = _series(values, m1, host), _series(values, m2, None)
        out = {}
        for t, x in num.items():
            # a non-finite ratio (overflow) is dropped like a division by zero
            if t in den and den[t] != 0 and math.isfinite(x / den[t]) and OPS[op](x / den[t], k):
                out[t] = x / den[t]
        return out

    return f"last({m1}{match}) / last({m2}) {op} {k}", ref_ratio


@st.composite
def conditions(draw: st.DrawFn) -> tuple[str, Ref]:
    text, ref = draw(simple())
    if draw(st.booleans()):
        return text, ref
    setop = draw(st.sampled_from(["and", "or", "unless"]))
    text2, ref2 = draw(simple())

    def combined(values: dict[tuple[str, Tags], float]) -> dict[Tags, float]:
        left, right = ref(values), ref2(values)
        if setop == "and":
            return {t: v for t, v in left.items() if t in right}
        if setop == "unless":
            return {t: v for t, v in left.items() if t not in right}
        return {**{t: v for t, v in right.items() if t not in left}, **left}

    return f"{text} {setop} {text2}", combined


@settings(max_examples=400, deadline=None)
@given(snapshots, conditions())
def test_matches_reference(values: dict[tuple[str, Tags], float], cond: tuple[str, Ref]) -> None:
    text, ref = cond
    assert evaluate(parse(text), Snapshot(values)) == ref(values)
