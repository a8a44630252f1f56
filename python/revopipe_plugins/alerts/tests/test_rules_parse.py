"""Rule condition parsing: valid conditions give the expected tree, invalid ones a
RuleSyntaxError at the right line/column with a useful hint, and unparse round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe_plugins.alerts.rules import (
    Aggregate,
    Arith,
    Compare,
    ErrorRatio,
    Expr,
    Matcher,
    Number,
    PredictLinear,
    RuleSyntaxError,
    Selector,
    SetOp,
    Stat,
    parse,
    unparse,
)


def sel(metric: str, *matchers: tuple[str, str, str]) -> Selector:
    return Selector(metric, tuple(Matcher(lbl, op, v) for lbl, op, v in matchers))  # type: ignore[arg-type]


def stat(s: str, metric: str, *matchers: tuple[str, str, str]) -> Stat:
    return Stat(s, sel(metric, *matchers))


VALID: list[tuple[str, Expr]] = [
    ("last(system.cpu) > 80", Compare(">", stat("last", "system.cpu"), Number(80))),
    ("value(up) == 0", Compare("==", stat("value", "up"), Number(0))),
    ("p99(http.dur) >= 2.5", Compare(">=", stat("p99", "http.dur"), Number(2.5))),
    ("p99.9(http.dur) < 1e-3", Compare("<", stat("p99_9", "http.dur"), Number(0.001))),
    ("p99_9(http.dur) <= 1", Compare("<=", stat("p99_9", "http.dur"), Number(1))),
    ("p50.0(x) != 1", Compare("!=", stat("p50", "x"), Number(1))),
    ("rate(x)", stat("rate", "x")),
    (
        'mean(http.dur{route="/api", method!="GET", host=~"web-.*", env!~"dev|test"}) > 2',
        Compare(
            ">",
            stat(
                "mean",
                "http.dur",
                ("route", "=", "/api"),
                ("method", "!=", "GET"),
                ("host", "=~", "web-.*"),
                ("env", "!~", "dev|test"),
            ),
            Number(2),
        ),
    ),
    ("count(x{a='b\\'c'})", stat("count", "x", ("a", "=", "b'c"))),
    (
        'max("odd-name"{"k.e.y"="v",}) > 1',
        Compare(">", stat("max", "odd-name", ("k.e.y", "=", "v")), Number(1)),
    ),
    (
        "sum(a) + min(b) * 2 > 3",
        Compare(
            ">",
            Arith("+", stat("sum", "a"), Arith("*", stat("min", "b"), Number(2))),
            Number(3),
        ),
    ),
    (
        "(last(a) - last(b)) / 4",
        Arith("/", Arith("-", stat("last", "a"), stat("last", "b")), Number(4)),
    ),
    (
        "last(a) - last(b) - last(c)",
        Arith("-", Arith("-", stat("last", "a"), stat("last", "b")), stat("last", "c")),
    ),
    ("-last(a) > -1", Compare(">", Arith("*", Number(-1), stat("last", "a")), Number(-1))),
    (
        'error_ratio(http.requests{status=~"5.."}, http.requests) > 0.05',
        Compare(
            ">",
            ErrorRatio(sel("http.requests", ("status", "=~", "5..")), sel("http.requests")),
            Number(0.05),
        ),
    ),
    (
        "last(a) > 1 and last(b) > 2 or last(c) > 3 unless last(d) > 4",
        SetOp(
            "or",
            SetOp(
                "and",
                Compare(">", stat("last", "a"), Number(1)),
                Compare(">", stat("last", "b"), Number(2)),
            ),
            SetOp(
                "unless",
                Compare(">", stat("last", "c"), Number(3)),
                Compare(">", stat("last", "d"), Number(4)),
            ),
        ),
    ),
    (
        "sum by (host, dc) (rate(x)) > 10",
        Compare(">", Aggregate("sum", "by", ("host", "dc"), stat("rate", "x")), Number(10)),
    ),
    (
        "avg without (cpu) (last(system.cpu)) > 80",
        Compare(">", Aggregate("avg", "without", ("cpu",), stat("last", "system.cpu")), Number(80)),
    ),
    ("max by () (last(x))", Aggregate("max", "by", (), stat("last", "x"))),
    # sum/min/max are statistics unless by/without follows
    ("min(x) < 1", Compare("<", stat("min", "x"), Number(1))),
    (
        "last(and) > 1 # a metric named like a keyword\n",
        Compare(">", stat("last", "and"), Number(1)),
    ),
    ("2 < last(x)", Compare("<", Number(2), stat("last", "x"))),
    (
        'predict_linear(last(disk{mount="/"}), "1h", "4h") >= 1',
        Compare(
            ">=",
            PredictLinear(stat("last", "disk", ("mount", "=", "/")), 3600.0, 14400.0),
            Number(1),
        ),
    ),
    (
        "predict_linear(value(x), '1h30m', '0s') < 0",
        Compare("<", PredictLinear(stat("value", "x"), 5400.0, 0.0), Number(0)),
    ),
]


@pytest.mark.parametrize(("text", "tree"), VALID, ids=[t for t, _ in VALID])
def test_parses(text: str, tree: Expr) -> None:
    assert parse(text) == tree
    assert parse(unparse(tree)) == tree


INVALID: list[tuple[str, int, int, str, str]] = [
    # text, line, column, message fragment, hint fragment
    ("", 1, 1, "empty condition", "p99("),
    ("p999(x) > 1", 1, 1, "outside 0..100", "did you mean p99.9?"),
    ("P99(x) > 1", 1, 1, "unknown statistic 'P99'", "did you mean p99?"),
    ("rte(x) > 1", 1, 1, "unknown statistic 'rte'", "did you mean rate?"),
    ("avg(x) > 1", 1, 1, "unknown statistic 'avg'", "avg by (label)"),
    ("cpu > 80", 1, 1, "'cpu' is not a statistic", "last(cpu)"),
    ("last(cpu) > 80 %", 1, 16, "unexpected character '%'", "plain numbers"),
    ("last(a) > 1 AND last(b) > 1", 1, 13, "unexpected 'AND'", "did you mean and?"),
    ("last(a) > 1 && last(b) > 1", 1, 13, "unexpected character '&'", "and / or"),
    ("last(a) = 1", 1, 9, "'=' is not a comparison", "=="),
    ("last(a{x=b}) > 1", 1, 10, "expected a quoted value", 'x="b"'),
    ('last(a{x=="b"}) > 1', 1, 9, "expected a matcher operator", "did you mean =?"),
    ('last(a{x="b}) > 1', 1, 10, "unexpected character '\"'", "close the string"),
    ('last(a{x=~"(b"}) > 1', 1, 11, "bad regular expression", ""),
    ("last(a > 1", 1, 8, "expected ')'", ""),
    ("(last(a) > 1", 1, 13, "expected ')'", "close the parenthesis"),
    ("last(a) > 1)", 1, 12, "unexpected ')'", "no matching '('"),
    ("sum(rate(x)) > 1", 1, 5, "'rate' is not a metric name", "sum by (label) (expr)"),
    ("sum by host (rate(x))", 1, 8, "expected '('", ""),
    ("sum by (host) rate(x)", 1, 15, "expected '('", ""),
    ("1 > 2", 1, 1, "reads no series", ""),
    ("last(a) > 1 and 3", 1, 13, "right side of 'and'", ""),
    ("error_ratio(a) > 1", 1, 14, "expected ','", "two selectors"),
    ("last(a) >", 1, 10, "expected a number", ""),
    ("last(a) > 1\n  and\n  rte(b) > 2", 3, 3, "unknown statistic 'rte'", "did you mean rate?"),
    ('last(a) > "1"', 1, 11, "a string cannot stand alone", ""),
    ('predict_linear(disk, "1h", "4h") > 1', 1, 16, "'disk' is not a statistic", "last(disk)"),
    ('predict_linear(3, "1h", "4h") > 1', 1, 16, "needs a statistic", "predict_linear(last("),
    ('predict_linear(last(d), 3600, "4h") > 1', 1, 25, "quoted duration", 'quote it: "3600s"'),
    ('predict_linear(last(d), "1x", "4h") > 1', 1, 25, "bad window", ""),
    ('predict_linear(last(d), "0s", "4h") > 1', 1, 25, "window must be above zero", ""),
    ('predict_linear(last(d), "1h") > 1', 1, 29, "expected ','", "a window and a horizon"),
    ('predict_linear(last(d), "1h", "4h", "1h") > 1', 1, 35, "expected ')'", "three arguments"),
    ("predict_linear > 1", 1, 16, "expected '('", "predict_linear(last("),
]


@pytest.mark.parametrize(
    ("text", "line", "col", "msg", "hint"), INVALID, ids=[t for t, *_ in INVALID]
)
def test_rejects(text: str, line: int, col: int, msg: str, hint: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse(text, rule="my_rule")
    e = info.value
    assert (e.line, e.column) == (line, col), str(e)
    assert msg in e.message
    assert hint in e.hint
    rendered = str(e)
    assert rendered.startswith("rule 'my_rule': ")
    # The caret sits under the offending column of the quoted line.
    lines = rendered.splitlines()
    assert lines[2].index("^") - 2 == col - 1
    assert lines[1][2:] == text.splitlines()[line - 1] if text else True


# --- round trip over random trees -----------------------------------------------------

names = st.sampled_from(["a", "b.c", "x_y:z", "odd-name", "and"])
labels = st.sampled_from(["host", "route", "k.e.y"])
values = st.text(alphabet="ab\"'\\\n.*", max_size=4)
matchers = st.builds(Matcher, labels, st.sampled_from(["=", "!="]), values) | st.builds(
    Matcher, labels, st.sampled_from(["=~", "!~"]), st.sampled_from(["a.*", "x|y", ""])
)
selectors = st.builds(Selector, names, st.lists(matchers, max_size=2).map(tuple))
stats = st.builds(
    Stat, st.sampled_from(["value", "last", "rate", "sum", "min", "max", "p99", "p99_9"]), selectors
)
numbers = st.builds(
    Number, st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
)
durations = st.integers(0, 10**6).map(float) | st.sampled_from([0.25, 1.5, 5400.0])
predictions = st.builds(PredictLinear, stats, durations.filter(lambda d: d > 0), durations)
vectors = st.recursive(
    stats | st.builds(ErrorRatio, selectors, selectors) | predictions,
    lambda inner: (
        st.builds(Arith, st.sampled_from(["+", "-", "*", "/"]), inner, inner | numbers)
        | st.builds(Compare, st.sampled_from([">", ">=", "<", "<=", "==", "!="]), inner, numbers)
        | st.builds(SetOp, st.sampled_from(["and", "or", "unless"]), inner, inner)
        | st.builds(
            Aggregate,
            st.sampled_from(["sum", "max", "min", "avg"]),
            st.sampled_from(["by", "without"]),
            st.lists(labels, max_size=2, unique=True).map(tuple),
            inner,
        )
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(vectors)
def test_unparse_round_trips(tree: Expr) -> None:
    assert parse(unparse(tree)) == tree
