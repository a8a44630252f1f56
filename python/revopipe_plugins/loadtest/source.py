"""The `loadtest` source: runs a load test and emits its per-second results, so they flow
into `aggregate`, alert rules, the dashboard and the history store like any metric. It ends
with the test (a finite source), after one `loadtest.threshold` gauge per threshold
(1 passed, 0 failed)."""

from __future__ import annotations

import time

from pydantic import Field

from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.components import Emit, Source
from revopipe.config import SourceConfig
from revopipe.events import MetricKind, make_tags
from revopipe_plugins.loadtest.output import snapshot_batch
from revopipe_plugins.loadtest.plan import LoadTestPlan
from revopipe_plugins.loadtest.run import LoadRun
from revopipe_plugins.loadtest.thresholds import evaluate


class LoadTestConfig(SourceConfig, LoadTestPlan):
    name: str = Field(default="", description="the test's name, tagged as `loadtest.name`")


class LoadTestSource(Source[LoadTestConfig]):
    type_name = "loadtest"
    Config = LoadTestConfig
    description = "HTTP load test (Rust generator): per-second results, then ends"

    async def run(self, emit: Emit) -> None:
        cfg = self.config
        tags = make_tags(
            {
                "loadtest.name": cfg.name or self.context.name,
                "loadtest.test": cfg.test,
                "loadtest.model": cfg.resolved_model,
            }
        )
        start_ns = time.time_ns()
        totals: dict[str, float] = {}
        with LoadRun(cfg) as run:
            async for snap in run.snapshots_async():
                await emit(snapshot_batch(snap, totals, tags, start_ns))
            summary = run.summary()
        results = evaluate(cfg.thresholds, summary)
        b = MetricBatchBuilder()
        for r in results:
            # 1 = passed: an alert rule such as `value(loadtest.threshold) < 1` gates on it
            b.add(
                "loadtest.threshold",
                1.0 if r.ok else 0.0,
                MetricKind.GAUGE,
                "1",
                make_tags({**dict(tags), "threshold": r.text}),
            )
            level = self.log.info if r.ok else self.log.warning
            level(
                "threshold %r: %s (observed %s)",
                r.text,
                "ok" if r.ok else "FAILED",
                r.observed_text,
            )
        if results:
            await emit(Batch(b.build()))
        self.log.info(
            "load test done: %d requests, %.0f req/s, p99 %.1f ms",
            summary["requests"],
            summary["requests"] / max(summary["interval"], 1e-9),
            summary["latency"]["p99"] * 1e3,
        )
