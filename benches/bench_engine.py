"""Engine throughput: metric events per second through source -> processor -> sink with
trivial components, for batch sizes 1, 100 and 10 000, and the per-batch overhead.

The peer is the floor any anyio pipeline pays: the same three stages as bare tasks joined
by bounded memory streams, with no supervision, counters, fan-out or drain logic. The
ratio says what revopipe's engine costs on top of that floor.

    python benches/bench_engine.py [--events 2000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from array import array

import anyio

from revopipe import Batch, MetricBatch, Pipeline, Processor, ProcessorConfig, hookimpl
from revopipe.config.load import load_dict
from revopipe.events import MetricKind
from revopipe.plugins import build_registry


class PassConfig(ProcessorConfig):
    pass


class Passthrough(Processor[PassConfig]):
    type_name = "passthrough"
    Config = PassConfig

    async def process(self, batch: Batch) -> Batch:
        return batch


class _Plugin:
    @hookimpl
    def revopipe_component_types(self) -> list[type]:
        return [Passthrough]


REGISTRY = build_registry([("bench", _Plugin())])


def revopipe_run(events: int, batch_size: int) -> float:
    spec = load_dict(
        {
            "pipeline": {"data_dir": "/tmp/revopipe-bench"},
            "sources": {
                "gen": {
                    "type": "generate",
                    "mode": "constant",
                    "count": events,
                    "batch_size": batch_size,
                    "interval": "0s",
                }
            },
            "processors": {"pass": {"type": "passthrough", "inputs": ["gen"], "buffer": 16}},
            "sinks": {"null": {"type": "blackhole", "inputs": ["pass"], "buffer": 16}},
        },
        REGISTRY,
    )
    pipeline = Pipeline(spec, REGISTRY)
    t0 = time.perf_counter()
    anyio.run(pipeline.run)
    elapsed = time.perf_counter() - t0
    got = {s.name: s for s in pipeline.component_stats()}["null"].events_in
    assert got == events, (got, events)
    return elapsed


def bare_anyio_run(events: int, batch_size: int) -> float:
    n = batch_size
    metrics = MetricBatch(
        ["x"] * n,
        bytes([MetricKind.COUNTER]) * n,
        array("d", [1.0]) * n,
        ["1"] * n,
        array("q", [0]) * n,
        [()] * n,
    )
    batch = Batch(metrics)

    async def main() -> None:
        s1, r1 = anyio.create_memory_object_stream[Batch](16)
        s2, r2 = anyio.create_memory_object_stream[Batch](16)
        received = 0

        async def source() -> None:
            async with s1:
                for _ in range(events // n):
                    await s1.send(batch)

        async def proc() -> None:
            async with r1, s2:
                async for b in r1:
                    await s2.send(b)

        async def sink() -> None:
            nonlocal received
            async with r2:
                async for b in r2:
                    received += len(b)

        async with anyio.create_task_group() as tg:
            tg.start_soon(source)
            tg.start_soon(proc)
            tg.start_soon(sink)
        assert received == events

    t0 = time.perf_counter()
    anyio.run(main)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} python "
        f"{platform.python_version()}"
    )
    print(
        "| batch size | events | revopipe events/s | bare anyio events/s | ratio | "
        "revopipe µs/batch | bare µs/batch |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch_size in (1, 100, 10_000):
        # batch size 1 is per-batch overhead: fewer events keep the run short
        events = min(args.events, 200_000) if batch_size == 1 else args.events
        events -= events % batch_size
        ours = statistics.median(revopipe_run(events, batch_size) for _ in range(args.repeat))
        bare = statistics.median(bare_anyio_run(events, batch_size) for _ in range(args.repeat))
        batches = events / batch_size
        print(
            f"| {batch_size} | {events} | {events / ours:,.0f} | {events / bare:,.0f} | "
            f"{bare / ours:.2f} | {ours / batches * 1e6:.1f} | {bare / batches * 1e6:.1f} |"
        )


if __name__ == "__main__":
    main()
