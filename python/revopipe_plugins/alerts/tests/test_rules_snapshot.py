"""The snapshot's speed-ups keep the plain semantics: selections kept across passes and
maintained as series come and go, per-pass memos shared between rules, remembered group
keys and label-set ids give, after any sequence of updates and expiries, exactly what a
plain evaluator scanning every series gives. Also: ids and memos stay bounded under
series churn, and evaluating while another thread updates is safe."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from revopipe.batch import MetricBatchBuilder
from revopipe.events import Tags, make_tags
from revopipe_plugins.alerts.rules import (
    Aggregate,
    Arith,
    Compare,
    ErrorRatio,
    Expr,
    Matcher,
    Number,
    Selector,
    SetOp,
    Snapshot,
    Stat,
    evaluate,
    parse,
    unparse,
)

Values = dict[tuple[str, Tags], float]

# --- a plain reference evaluator: scan everything, build everything, no caches ----------


def _accepts(m: Matcher, tags: Tags) -> bool:
    v = dict(tags).get(m.label, "")
    if m.op == "=":
        return v == m.value
    if m.op == "!=":
        return v != m.value
    hit = re.fullmatch(m.value, v) is not None
    return hit if m.op == "=~" else not hit


def _select(values: Values, name: str, matchers: tuple[Matcher, ...]) -> dict[Tags, float]:
    return {
        t: v for (n, t), v in values.items() if n == name and all(_accepts(m, t) for m in matchers)
    }


def _group(vec: dict[Tags, float], keep: Callable[[str], bool]) -> dict[Tags, list[float]]:
    out: dict[Tags, list[float]] = {}
    for t, v in vec.items():
        out.setdefault(tuple(kv for kv in t if keep(kv[0])), []).append(v)
    return out


def ref(expr: Expr, values: Values) -> dict[Tags, float] | float:
    if isinstance(expr, Number):
        return expr.value
    if isinstance(expr, Stat):
        return _select(values, expr.series_name, expr.selector.matchers)
    if isinstance(expr, ErrorRatio):
        drop = {m.label for m in expr.numerator.matchers}

        def summed(sel: Selector) -> dict[Tags, float]:
            has_count = any(n == f"{sel.metric}.count" for n, _ in values)
            vec = _select(values, f"{sel.metric}.{'count' if has_count else 'sum'}", sel.matchers)
            groups = _group(vec, lambda k: k not in drop)
            return {k: math.fsum(vs) for k, vs in groups.items()}

        num, den = summed(expr.numerator), summed(expr.denominator)
        return {k: num.get(k, 0.0) / d for k, d in den.items() if d != 0}
    if isinstance(expr, Aggregate):
        inner = ref(expr.expr, values)
        assert isinstance(inner, dict)
        labels = set(expr.labels)
        groups = _group(
            inner, (lambda k: k in labels) if expr.mode == "by" else (lambda k: k not in labels)
        )
        fold: Callable[[list[float]], float] = {
            "sum": math.fsum,
            "max": max,
            "min": min,
            "avg": lambda vs: math.fsum(vs) / len(vs),
        }[expr.op]
        return {k: fold(vs) for k, vs in groups.items()}
    assert not isinstance(expr, Number | Stat)
    left, right = ref(expr.left, values), ref(expr.right, values)  # type: ignore[union-attr]
    if isinstance(expr, SetOp):
        lv = left if isinstance(left, dict) else {}
        rv = right if isinstance(right, dict) else {}
        if expr.op == "and":
            return {k: v for k, v in lv.items() if k in rv}
        if expr.op == "unless":
            return {k: v for k, v in lv.items() if k not in rv}
        return {**{k: v for k, v in rv.items() if k not in lv}, **lv}

    def pairs() -> list[tuple[Tags, float, float]]:
        if isinstance(left, dict) and isinstance(right, dict):
            return [(k, a, right[k]) for k, a in left.items() if k in right]
        if isinstance(left, dict):
            return [(k, a, float(right)) for k, a in left.items()]  # type: ignore[arg-type]
        assert isinstance(right, dict)
        return [(k, float(left), b) for k, b in right.items()]

    if isinstance(expr, Arith):
        out = {}
        for k, a, b in pairs():
            if expr.op == "/" and b == 0:
                continue
            r = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0.0}[expr.op]
            if math.isfinite(r):
                out[k] = r
        return out
    assert isinstance(expr, Compare)
    ops: dict[str, Callable[[float, float], bool]] = {
        ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y,
        "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y,
        "==": lambda x, y: x == y,
        "!=": lambda x, y: x != y,
    }
    return {k: a for k, a, b in pairs() if ops[expr.op](a, b)}


# --- random trees over a small universe of series -------------------------------------

NAMES = ("a.last", "b.last", "c.count", "c.sum", "d.sum")
LABELS = ("host", "dc", "route")
LABEL_VALUES = {"host": ("h1", "h2", "h3"), "dc": ("eu", "us"), "route": ("/x", "/y", "/z")}

tag_sets = st.fixed_dictionaries(
    {},
    optional={k: st.sampled_from(v) for k, v in LABEL_VALUES.items()},
).map(make_tags)
rows = st.lists(
    st.tuples(st.sampled_from(NAMES), tag_sets, st.integers(-3, 6).map(float)), max_size=14
)
matchers = st.one_of(
    st.builds(
        Matcher,
        st.sampled_from(LABELS),
        st.sampled_from(["=", "!="]),
        st.sampled_from(["", "h1", "eu", "/x", "/y"]),
    ),
    st.builds(
        Matcher,
        st.sampled_from(LABELS),
        st.sampled_from(["=~", "!~"]),
        st.sampled_from(["h[12]", ".*", "", "/.", "e.|u."]),
    ),
)
selectors = st.builds(
    Selector, st.sampled_from(["a", "b", "c", "d"]), st.lists(matchers, max_size=3).map(tuple)
)
stats = st.builds(Stat, st.sampled_from(["last", "sum", "count"]), selectors)
numbers = st.builds(Number, st.integers(-2, 4).map(float))
trees = st.recursive(
    stats | st.builds(ErrorRatio, selectors, selectors),
    lambda inner: (
        st.builds(Arith, st.sampled_from(["+", "-", "*", "/"]), inner, inner | numbers)
        | st.builds(Arith, st.sampled_from(["+", "/"]), numbers, inner)
        | st.builds(Compare, st.sampled_from([">", ">=", "<", "==", "!="]), inner, inner | numbers)
        | st.builds(SetOp, st.sampled_from(["and", "or", "unless"]), inner, inner)
        | st.builds(
            Aggregate,
            st.sampled_from(["sum", "max", "min", "avg"]),
            st.sampled_from(["by", "without"]),
            st.lists(st.sampled_from(LABELS), max_size=2, unique=True).map(tuple),
            inner,
        )
    ),
    max_leaves=6,
)
# a step: new rows at the next timestamp, then maybe expire rows older than some step
steps = st.lists(st.tuples(rows, st.none() | st.integers(0, 6)), min_size=1, max_size=6)


def _close(got: dict[Tags, float], want: dict[Tags, float]) -> bool:
    return got.keys() == want.keys() and all(
        math.isclose(got[k], want[k], rel_tol=1e-9, abs_tol=1e-12) for k in got
    )


@settings(max_examples=300, deadline=None)
@given(steps, st.lists(trees, min_size=1, max_size=5))
def test_optimized_evaluation_matches_the_plain_reference(
    plan: list[tuple[list[tuple[str, Tags, float]], int | None]], exprs: list[Expr]
) -> None:
    snapshot = Snapshot()
    model: dict[tuple[str, Tags], tuple[float, int]] = {}
    for step, (new_rows, expire_before) in enumerate(plan, start=1):
        b = MetricBatchBuilder(default_ts=step)
        for name, tags, value in new_rows:
            b.add(name, value, tags=tags)
            model[(name, tags)] = (value, step)
        snapshot.update(b.build())
        if expire_before is not None:
            gone = [k for k, (_, ts) in model.items() if ts < expire_before]
            for k in gone:
                del model[k]
            assert snapshot.expire(expire_before) == len(gone)
        values = {k: v for k, (v, _) in model.items()}
        assert dict(snapshot) == values
        assert len(snapshot) == len(values)
        # twice: the second pass reads the memoized results
        for _ in range(2):
            for expr in exprs:
                want = ref(expr, values)
                got = evaluate(expr, snapshot)
                assert _close(got, want if isinstance(want, dict) else {}), unparse(expr)


def test_selections_follow_series_that_come_and_go() -> None:
    s = Snapshot()
    cond = parse('last(m{host=~"h[12]", dc!="us"}) > 0')

    def push(ts: int, *hosts: tuple[str, str]) -> None:
        b = MetricBatchBuilder(default_ts=ts)
        for host, dc in hosts:
            b.add("m.last", 1.0, tags={"host": host, "dc": dc})
        s.update(b.build())

    push(1, ("h1", "eu"), ("h3", "eu"))
    assert list(evaluate(cond, s)) == [make_tags({"host": "h1", "dc": "eu"})]
    push(2, ("h2", "eu"), ("h2", "us"))
    assert len(evaluate(cond, s)) == 2
    s.expire(2)  # h1 and h3 stop reporting
    assert list(evaluate(cond, s)) == [make_tags({"host": "h2", "dc": "eu"})]
    push(3, ("h1", "eu"))  # back again, under a reused id
    assert len(evaluate(cond, s)) == 2


def test_ids_and_group_keys_stay_bounded_under_churn() -> None:
    s = Snapshot()
    cond = parse('sum by (dc) (last(m{dc=~"e.*"})) > 0 and sum without (pod) (last(m)) > 0')
    for ts in range(1, 301):
        b = MetricBatchBuilder(default_ts=ts)
        for j in range(10):  # ten pods live at a time, a new one every step
            b.add("m.last", 1.0, tags={"pod": f"p{ts + j}", "dc": "eu"})
        s.update(b.build())
        evaluate(cond, s)
        s.expire(ts)
    assert len(s) == 10
    # ten live label sets plus the two group keys; released ids are reused
    assert len(s._ids) <= 12
    assert len(s._tags_of) <= 24


def test_evaluating_while_another_thread_updates() -> None:
    s = Snapshot()
    conds = [parse("sum by (dc) (last(m)) > 0"), parse('last(m{dc="eu"}) > 0')]
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            ts = 0
            while not stop.is_set() and ts < 2000:
                ts += 1
                b = MetricBatchBuilder(default_ts=ts)
                for j in range(50):
                    b.add("m.last", 1.0, tags={"pod": f"p{ts + j}", "dc": ("eu", "us")[j % 2]})
                s.update(b.build())
                s.expire(ts - 1)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            for c in conds:
                evaluate(c, s)
    finally:
        stop.set()
        t.join(10)
    assert not errors
