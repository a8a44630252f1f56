"""`from revopipe import metrics`: handles, timer as context manager and decorator, and
exact totals under 8 threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from revopipe import _core, metrics


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    _core.reset_instruments()
    yield
    _core.reset_instruments()


def histograms() -> dict[str, dict[str, object]]:
    return {str(r["name"]): r for r in metrics.collect() if r["kind"] == 2}


def test_same_name_and_tags_share_one_instrument() -> None:
    a = metrics.counter("c", tags={"k": "v"})
    b = metrics.counter("c", tags={"k": "v"})
    a.inc()
    b.inc(2)
    assert a.value == b.value == 3.0
    assert metrics.counter("c", tags={"k": "other"}).value == 0.0


def test_timer_context_manager_and_decorator() -> None:
    with metrics.timer("block.duration"):
        sum(range(1000))

    @metrics.timer("fn.duration", tags={"fn": "work"})
    def work(n: int) -> int:
        return sum(range(n))

    assert work(10) == 45 and work(20) == 190
    h = histograms()
    assert h["block.duration"]["count"] == 1
    assert h["fn.duration"]["count"] == 2
    assert 0 < float(h["fn.duration"]["max"]) < 1  # type: ignore[arg-type]


def test_eight_threads_recording_concurrently_keep_exact_totals() -> None:
    c = metrics.counter("hits")
    h = metrics.histogram("lat", unit="ms")
    n, threads = 20_000, 8
    start = threading.Barrier(threads)

    def hammer() -> None:
        start.wait()
        for i in range(n):
            c.inc()
            h.record(float(i % 100))

    ts = [threading.Thread(target=hammer) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert c.value == n * threads
    assert h.count == n * threads
    snap = histograms()["lat"]
    assert snap["count"] == n * threads
    assert snap["sum"] == threads * (n // 100) * sum(range(100))
