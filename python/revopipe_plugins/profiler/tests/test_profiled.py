"""`@revopipe.profiled`: per-call durations into `code.function.duration` histograms."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import revopipe
from revopipe import metrics

METRIC = "code.function.duration"


@pytest.fixture(autouse=True)
def drained_instruments() -> None:
    # a collect takes the histograms' observations so far: each test sees only its own
    metrics.collect()


def readings() -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    return {dict(r)["tags"]: dict(r) for r in metrics.collect() if r["name"] == METRIC}


def key(function: str, module: str = __name__, **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"code.function": function, "code.namespace": module, **extra}.items()))


def add(a: int, b: int) -> int:
    return a + b


def test_bare_sync_counts_every_call_in_seconds() -> None:
    @revopipe.profiled
    def nap(seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    assert [nap(0.01) for _ in range(3)] == ["done"] * 3
    assert nap.__name__ == "nap" and nap.__doc__ is None
    r = readings()[key("test_bare_sync_counts_every_call_in_seconds.<locals>.nap")]
    assert r["count"] == 3 and r["unit"] == "s"
    # slept 10 ms each: a lower bound only (the machine may be slow, never faster)
    assert r["min"] >= 0.009 and r["sum"] >= 0.027


def test_module_level_function_and_arguments_pass_through() -> None:
    # decorated here, not at import: other tests drop every instrument
    # (`_core.reset_instruments()`), which would leave an import-time handle uncollected
    profiled_add = revopipe.profiled(add)
    assert profiled_add(2, b=3) == 5
    assert readings()[key("add")]["count"] == 1


def test_with_name_and_tags() -> None:
    @revopipe.profiled(name="checkout", tags={"tier": "gold"})
    def pay(amount: int) -> int:
        return amount

    pay(1)
    pay(2)
    assert readings()[key("checkout", tier="gold")]["count"] == 2


def test_async_is_timed_until_awaited() -> None:
    @revopipe.profiled
    async def fetch(seconds: float) -> int:
        await asyncio.sleep(seconds)
        return 42

    async def main() -> list[int]:
        return list(await asyncio.gather(fetch(0.02), fetch(0.02)))

    assert asyncio.iscoroutinefunction(fetch)
    assert asyncio.run(main()) == [42, 42]
    r = readings()[key("test_async_is_timed_until_awaited.<locals>.fetch")]
    assert r["count"] == 2 and r["min"] >= 0.018  # awaited time, not the call's


def test_exceptions_propagate_and_are_timed_in_the_same_series() -> None:
    @revopipe.profiled(name="flaky")
    def flaky(fail: bool) -> str:
        if fail:
            raise ValueError("nope")
        return "ok"

    @revopipe.profiled(name="aflaky")
    async def aflaky() -> None:
        raise KeyError("gone")

    assert flaky(False) == "ok"
    with pytest.raises(ValueError, match="nope"):
        flaky(True)
    with pytest.raises(KeyError):
        asyncio.run(aflaky())
    got = readings()
    assert got[key("flaky")]["count"] == 2
    assert got[key("aflaky")]["count"] == 1
    assert [k for k in got if dict(k)["code.function"] == "flaky"] == [key("flaky")]


def test_methods_use_the_qualname() -> None:
    class Repo:
        @revopipe.profiled
        def get(self, x: int) -> int:
            return x

    assert Repo().get(5) == 5
    assert readings()[key("test_methods_use_the_qualname.<locals>.Repo.get")]["count"] == 1


def test_generator_functions_are_refused() -> None:
    def gen() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    for fn in (gen, agen):
        with pytest.raises(TypeError, match="generator function"):
            revopipe.profiled(fn)


def test_custom_metric_name() -> None:
    @revopipe.profiled(metric="app.render.duration")
    def render() -> None:
        pass

    render()
    names = {r["name"] for r in metrics.collect()}
    assert "app.render.duration" in names and METRIC not in names
