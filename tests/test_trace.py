"""revopipe.trace: spans, the current span across threads and asyncio tasks, sampling,
the bounded buffer and the Span events it drains into."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from revopipe import trace
from revopipe.events import Span

DEFAULTS = {"sample_ratio": 1.0, "always_on_error": True, "max_buffered": 10_000}


@pytest.fixture(autouse=True)
def fresh_tracing() -> Iterator[None]:
    trace.configure(**DEFAULTS)
    trace.clear()
    yield
    trace.configure(**DEFAULTS)
    trace.clear()


def by_name(spans: list[Span]) -> dict[str, Span]:
    return {s.name: s for s in spans}


def is_hex(text: str, n: int) -> bool:
    return len(text) == n and all(c in "0123456789abcdef" for c in text) and int(text, 16) != 0


# ------------------------------------------------------------------------------ spans


def test_nested_spans_are_parent_and_child_and_drain_as_events() -> None:
    assert trace.current_span() is None
    with trace.span("outer", {"user.id": 7}) as outer:
        assert trace.current_span() is outer
        with trace.span("inner") as inner:
            assert trace.current_span() is inner
        assert trace.current_span() is outer
    assert trace.current_span() is None

    got = by_name(trace.drain())
    assert set(got) == {"outer", "inner"}
    o, i = got["outer"], got["inner"]
    assert is_hex(o.trace_id, 32) and is_hex(o.span_id, 16)
    assert o.parent_span_id is None
    assert (i.trace_id, i.parent_span_id) == (o.trace_id, o.span_id)
    assert i.span_id != o.span_id
    assert o.start_ns <= i.start_ns <= i.end_ns <= o.end_ns
    assert o.attributes == (("user.id", "7"),)
    assert o.status == i.status == "unset"
    # ids as the live span shows them
    assert (outer.trace_id_hex, outer.span_id_hex) == (o.trace_id, o.span_id)
    assert inner.parent_id == outer.span_id
    assert trace.drain() == []


def test_wall_clock_times_are_near_now() -> None:
    import time

    before = time.time_ns()
    with trace.span("x"):
        pass
    after = time.time_ns()
    (s,) = trace.drain()
    # perf_counter readings converted with a wall-clock offset: within a millisecond
    assert before - 1_000_000 <= s.start_ns <= s.end_ns <= after + 1_000_000


def test_attributes_are_copied_never_mutating_the_callers_dict() -> None:
    attrs = {"a": 1}
    with trace.span("x", attrs) as s:
        s.set_attribute("b", "two")
        s.set_attributes({"c": 3.5, "a": "one"})
    assert attrs == {"a": 1}
    s.set_attribute("late", 1)  # ignored: the span has ended
    (e,) = trace.drain()
    assert e.attributes == (("a", "one"), ("b", "two"), ("c", "3.5"))


def test_kind_and_status_travel_as_the_otlp_attributes() -> None:
    with trace.span("call", kind="client") as s:
        s.set_status("error", "upstream said no")
    with trace.span("ok") as s2:
        s2.set_status("ok", "ignored for ok")
    got = by_name(trace.drain())
    assert got["call"].status == "error"
    assert dict(got["call"].attributes) == {
        "span.kind": "client",
        "otel.status_description": "upstream said no",
    }
    assert got["ok"].status == "ok" and got["ok"].attributes == ()


def test_set_status_rejects_an_unknown_status() -> None:
    with trace.span("x") as s, pytest.raises(ValueError, match="status must be"):
        s.set_status("failed")  # type: ignore[arg-type]


def test_an_escaping_exception_fails_the_span_and_still_propagates() -> None:
    with pytest.raises(KeyError), trace.span("lookup"):
        raise KeyError("user 7")
    (e,) = trace.drain()
    assert e.status == "error"
    a = dict(e.attributes)
    assert a["exception.type"] == "KeyError"
    assert a["exception.message"] == "'user 7'"
    assert a["otel.status_description"] == "KeyError: 'user 7'"


def test_record_exception_keeps_the_status_and_an_explicit_error_message_wins() -> None:
    class Boom(Exception):
        pass

    with trace.span("handled") as s:
        s.record_exception(ValueError("bad input"))
    with pytest.raises(Boom), trace.span("failed") as s2:
        s2.set_status("error", "payment declined")
        raise Boom("card")
    got = by_name(trace.drain())
    assert got["handled"].status == "unset"
    assert dict(got["handled"].attributes)["exception.type"] == "ValueError"
    f = dict(got["failed"].attributes)
    assert got["failed"].status == "error"
    assert f["otel.status_description"] == "payment declined"
    assert f["exception.type"].endswith("Boom")


def test_cancellation_is_not_an_error() -> None:
    class Stop(BaseException):
        pass

    with pytest.raises(Stop), trace.span("cancelled"):
        raise Stop
    (e,) = trace.drain()
    assert e.status == "unset"


def test_start_span_is_not_current_and_ends_once() -> None:
    with trace.span("parent") as parent:
        s = trace.start_span("async work", {"k": "v"}, kind="producer")
        assert trace.current_span() is parent
        assert s.parent_id == parent.span_id and s.trace_id == parent.trace_id
    assert not s.ended
    s.end(RuntimeError("lost"))
    s.end()
    assert s.ended
    got = by_name(trace.drain())
    assert got["async work"].status == "error"
    assert dict(got["async work"].attributes)["span.kind"] == "producer"
    assert len(got) == 2


def test_explicit_parent_overrides_the_current_span() -> None:
    remote = trace.SpanContext(0xABC, 0x123, True, "vendor=x")
    with trace.span("current"), trace.span("server", parent=remote, kind="server") as s:
        assert s.trace_id == 0xABC and s.parent_id == 0x123
        assert s.tracestate == "vendor=x"
    with trace.span("root", parent=None) as r:
        assert r.parent_id == 0
    assert by_name(trace.drain())["server"].parent_span_id == f"{0x123:016x}"


def test_ids_are_never_zero_and_do_not_repeat() -> None:
    trace.configure(max_buffered=20_000)
    for _ in range(5000):
        with trace.span("x"), trace.span("y"):
            pass
    events = trace.drain()
    assert len(events) == 10_000
    assert len({e.span_id for e in events}) == 10_000
    assert len({e.trace_id for e in events}) == 5000
    assert all(is_hex(e.span_id, 16) and is_hex(e.trace_id, 32) for e in events)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        s = trace.start_span("child")
        os.write(w, s.span_id_hex.encode())
        os._exit(0)
    os.close(w)
    mine = trace.start_span("parent").span_id_hex
    with os.fdopen(r, "rb") as f:
        theirs = f.read().decode()
    os.waitpid(pid, 0)
    assert is_hex(theirs, 16)
    assert theirs != mine


# ------------------------------------------------------------------------------ decorator


def test_traced_sync_functions_keep_their_signature_and_errors() -> None:
    @trace.traced("compute", {"algo": "fast"})
    def compute(x: int, *, double: bool = False) -> int:
        """Docs."""
        with trace.span("inside"):
            pass
        if x < 0:
            raise ValueError("negative")
        return x * (2 if double else 1)

    @trace.traced
    def bare() -> str:
        return "ok"

    assert compute(3, double=True) == 6
    assert compute.__doc__ == "Docs." and compute.__name__ == "compute"
    with pytest.raises(ValueError):
        compute(-1)
    assert bare() == "ok"
    events = trace.drain()
    computes = [e for e in events if e.name == "compute"]
    assert [e.status for e in computes] == ["unset", "error"]
    assert all(dict(e.attributes)["algo"] == "fast" for e in computes)
    inside = [e for e in events if e.name == "inside"]
    assert {e.parent_span_id for e in inside} == {e.span_id for e in computes}
    assert any(
        e.name.endswith("test_traced_sync_functions_keep_their_signature_and_errors.<locals>.bare")
        for e in events
    )


@pytest.mark.anyio
async def test_traced_async_functions_span_the_awaited_call() -> None:
    @trace.traced("fetch")
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        with trace.span("parse"):
            pass
        if n == 0:
            raise LookupError("none")
        return n + 1

    assert await fetch(1) == 2
    with pytest.raises(LookupError):
        await fetch(0)
    events = trace.drain()
    fetches = [e for e in events if e.name == "fetch"]
    assert [e.status for e in fetches] == ["unset", "error"]
    parses = [e for e in events if e.name == "parse"]
    assert [p.parent_span_id for p in parses] == [f.span_id for f in fetches]


# ------------------------------------------------------------------------------ threads, tasks


def test_a_plain_thread_starts_its_own_trace_unless_the_context_is_carried() -> None:
    seen: dict[str, trace.LiveSpan | None] = {}

    def work(label: str) -> None:
        seen[label] = trace.current_span()
        with trace.span(label):
            pass

    with trace.span("request") as req:
        t1 = threading.Thread(target=work, args=("plain",))
        t2 = threading.Thread(target=trace.bind_context(work), args=("bound",))
        ctx = contextvars.copy_context()
        t3 = threading.Thread(target=ctx.run, args=(work, "copied"))
        for t in (t1, t2, t3):
            t.start()
            t.join(10)
    got = by_name(trace.drain())
    assert seen["plain"] is None
    assert got["plain"].parent_span_id is None
    assert got["plain"].trace_id != req.trace_id_hex
    for label in ("bound", "copied"):
        assert seen[label] is req
        assert got[label].parent_span_id == req.span_id_hex
        assert got[label].trace_id == req.trace_id_hex


def test_an_executor_with_bound_callables_parents_every_span() -> None:
    with trace.span("batch") as batch, ThreadPoolExecutor(4) as pool:
        step = trace.bind_context(trace.traced("item")(lambda i: i * i))
        assert sorted(pool.map(step, range(40))) == [i * i for i in range(40)]
    items = [e for e in trace.drain() if e.name == "item"]
    assert len(items) == 40
    assert {e.parent_span_id for e in items} == {batch.span_id_hex}


def test_a_span_ended_in_another_thread_does_not_raise() -> None:
    s = trace.span("handed over")
    s.__enter__()
    errors: list[BaseException] = []

    def finish() -> None:
        try:
            s.__exit__(None, None, None)
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    t = threading.Thread(target=finish)
    t.start()
    t.join(10)
    assert errors == []
    assert [e.name for e in trace.drain()] == ["handed over"]
    # it stays current here: the thread could not restore this context
    assert trace.current_span() is s
    trace.LiveSpan.__exit__(s, None, None, None)
    assert trace.current_span() is None


@pytest.mark.anyio
async def test_asyncio_tasks_inherit_the_current_span_and_do_not_leak_into_siblings() -> None:
    seen: dict[str, trace.LiveSpan | None] = {}

    async def step(label: str) -> None:
        with trace.span(label) as s:
            await asyncio.sleep(0.001)
            seen[label] = trace.current_span()
            assert seen[label] is s

    with trace.span("handler") as handler:
        await asyncio.gather(step("a"), step("b"), asyncio.create_task(step("c")))
        assert trace.current_span() is handler
    got = by_name(trace.drain())
    for label in "abc":
        assert got[label].parent_span_id == handler.span_id_hex
        assert got[label].trace_id == handler.trace_id_hex
    assert len({seen[label] for label in "abc"}) == 3

    # a task started outside any span stays a root
    await asyncio.create_task(step("detached"))
    assert trace.drain()[0].parent_span_id is None


# ------------------------------------------------------------------------------ sampling


def test_ratio_sampling_is_decided_by_the_trace_id_like_otel() -> None:
    trace.configure(sample_ratio=0.25, max_buffered=20_000)
    roots = []
    for _ in range(4000):
        with trace.span("root") as r:
            pass
        roots.append(r)
    bound = round(0.25 * 2**64)
    expected = {r.span_id_hex for r in roots if (r.trace_id & (2**64 - 1)) < bound}
    exported = {e.span_id for e in trace.drain()}
    assert exported == expected
    assert all(r.sampled == (r.span_id_hex in expected) for r in roots)
    assert 0.20 < len(exported) / 4000 < 0.30  # ~7 standard deviations


def test_children_follow_their_parent_whatever_the_ratio() -> None:
    trace.configure(sample_ratio=0.0)
    with trace.span("unsampled root") as root:
        trace.configure(sample_ratio=1.0)
        with trace.span("child") as child:
            pass
    assert not root.sampled and not child.sampled
    assert trace.drain() == []

    trace.configure(sample_ratio=0.0)
    kept = trace.SpanContext(0x1111, 0x2222, True)
    dropped = trace.SpanContext(0x3333, 0x4444, False)
    with trace.span("from sampled caller", parent=kept):
        pass
    trace.configure(sample_ratio=1.0)
    with trace.span("from unsampled caller", parent=dropped):
        pass
    assert [e.name for e in trace.drain()] == ["from sampled caller"]


def test_unsampled_spans_keep_ids_and_propagate_them() -> None:
    trace.configure(sample_ratio=0.0)
    with trace.span("quiet") as s:
        headers = trace.inject({})
    assert s.span_id != 0 and s.trace_id != 0
    assert headers["traceparent"] == f"00-{s.trace_id_hex}-{s.span_id_hex}-00"
    assert trace.drain() == []


def test_errors_are_exported_even_when_not_sampled_unless_disabled() -> None:
    trace.configure(sample_ratio=0.0)
    with trace.span("request"):
        with pytest.raises(RuntimeError), trace.span("db"):
            raise RuntimeError("down")
        with trace.span("marked") as m:
            m.set_status("error")
        with trace.span("fine"):
            pass
    assert sorted(e.name for e in trace.drain()) == ["db", "marked"]

    trace.configure(always_on_error=False)
    with pytest.raises(RuntimeError), trace.span("db"):
        raise RuntimeError("down")
    assert trace.drain() == []


def test_configure_changes_only_what_is_given_and_rejects_bad_values() -> None:
    cfg = trace.configure(sample_ratio=0.5)
    assert cfg == trace.TraceConfig(0.5, True, 10_000)
    assert trace.configure(max_buffered=7) == trace.TraceConfig(0.5, True, 7)
    assert trace.get_config() == trace.TraceConfig(0.5, True, 7)
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"sample_ratio must be within \[0, 1\]"):
            trace.configure(sample_ratio=bad)
    with pytest.raises(ValueError, match="max_buffered must be >= 1"):
        trace.configure(max_buffered=0)
    with pytest.raises(TypeError, match="max_buffered must be an int"):
        trace.configure(max_buffered=2.5)  # type: ignore[arg-type]
    assert trace.get_config() == trace.TraceConfig(0.5, True, 7)


# ------------------------------------------------------------------------------ buffer


def test_the_buffer_is_bounded_and_counts_what_it_drops() -> None:
    trace.configure(max_buffered=5)
    for i in range(8):
        with trace.span(f"s{i}"):
            pass
    assert trace.buffered_spans() == 5
    assert trace.dropped_spans() == 3
    first = trace.drain(limit=2)
    assert [e.name for e in first] == ["s0", "s1"]
    assert [e.name for e in trace.drain()] == ["s2", "s3", "s4"]
    with trace.span("after drain"):
        pass
    assert [e.name for e in trace.drain()] == ["after drain"]
    assert trace.dropped_spans() == 3


def test_draining_while_threads_end_spans_loses_nothing() -> None:
    trace.configure(max_buffered=1_000_000)
    n_threads, per_thread = 4, 2000
    drained: list[Span] = []
    done = threading.Event()

    def produce() -> None:
        for _ in range(per_thread):
            with trace.span("work"):
                pass

    def consume() -> None:
        while not done.is_set():
            drained.extend(trace.drain())
        drained.extend(trace.drain())

    c = threading.Thread(target=consume)
    c.start()
    producers = [threading.Thread(target=produce) for _ in range(n_threads)]
    for t in producers:
        t.start()
    for t in producers:
        t.join(60)
    done.set()
    c.join(60)
    assert len(drained) == n_threads * per_thread
    assert len({e.span_id for e in drained}) == n_threads * per_thread
    assert trace.dropped_spans() == 0
