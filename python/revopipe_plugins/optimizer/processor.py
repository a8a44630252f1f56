"""The `optimizer` processor: keeps the recent points of the series it watches, and every
`evaluate_every` runs its detectors on them:

    SeriesStore -> change points, trends, leaks, bottlenecks -> Finding
        -> Journal (recommendations table: new, still active, gone)
        -> Recommendation events downstream (new findings only)
    ActionEngine (actions.mode = dry_run | apply) -> tuned components, audit trail

The detectors run on a worker thread, since a change-point test over hundreds of series
would otherwise hold the event loop; the runtime never overlaps `process` and `tick`, so
the store is not touched meanwhile. Actions run on the event loop, where the pipeline they
retune lives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import anyio.to_thread

from revopipe.actions import Action
from revopipe.batch import Batch, MetricBatchBuilder
from revopipe.components import ControlError, ControlMode, Processor
from revopipe.events import MetricKind, Recommendation
from revopipe.plugins import default_registry
from revopipe_plugins.optimizer.bottlenecks import (
    COMPONENT_LOSSES,
    DETECTORS,
    SAMPLES,
    SELF_SHARE,
)
from revopipe_plugins.optimizer.config import OptimizerConfig
from revopipe_plugins.optimizer.engine import ActionEngine
from revopipe_plugins.optimizer.findings import Finding
from revopipe_plugins.optimizer.journal import Journal
from revopipe_plugins.optimizer.store import SeriesStore

# what the built-in rules and actions read, besides the configured watches
_ALWAYS = (
    SELF_SHARE,
    SAMPLES,
    "*.p50",
    "*.p99",
    *COMPONENT_LOSSES,
    "revopipe.component.busy_time",
    "revopipe.component.events_in",
    "process.cpu.time",
)


class OptimizerProcessor(Processor[OptimizerConfig]):
    type_name = "optimizer"
    Config = OptimizerConfig
    description = "change points, trends, leaks and bottlenecks as ranked recommendations"
    clock: Callable[[], float] = staticmethod(time.time)
    control_actions: ClassVar[Mapping[str, ControlMode]] = {
        "recommendations": "read",
        "audit": "read",
        "evaluate": "write",
    }

    async def start(self) -> None:
        cfg = self.config
        patterns = {
            *_ALWAYS,
            *(w.metric for w in cfg.changepoints),
            *(w.metric for w in cfg.trends),
            *cfg.leaks.metrics,
            cfg.bottlenecks.cpu_metric,
            *cfg.bottlenecks.throughput,
            *cfg.bottlenecks.errors,
            *cfg.keep,
        }
        self.store = SeriesStore(sorted(patterns), cfg.history, cfg.max_series)
        path = Path(self.context.data_dir) / cfg.database
        path.parent.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(path)
        self.engine = ActionEngine(
            self._actions(), cfg.actions, self.context.tuning, self.journal, self.clock
        )
        self.tick_interval = min(cfg.evaluate_every / 4, 1.0)
        self._next_eval = self.clock() + cfg.evaluate_every
        self._held: list[Batch] = []
        self.evaluations = 0

    def _actions(self) -> list[Action[Any]]:
        cfg = self.config.actions
        if cfg.mode == "off":
            return []
        registry = self.context.registry or default_registry()
        out = []
        for name in cfg.use:
            cls = registry.action_class(name, where=f"optimizer {self.context.name!r}")
            out.append(cls(cls.Config.model_validate(cfg.table(name))))
        return out

    async def stop(self) -> None:
        journal = getattr(self, "journal", None)
        if journal is not None:
            journal.close()

    async def process(self, batch: Batch) -> Batch | None:
        self.store.ingest(batch.metrics)
        return batch if self.config.forward else None

    async def tick(self) -> list[Batch] | None:
        out, self._held = self._held, []
        if self.clock() >= self._next_eval:
            out.append(await self.evaluate())
        return out or None

    async def evaluate(self) -> Batch:
        """Run every detector and the actions once; the batch holds the new findings as
        Recommendation events and the optimizer's own gauges."""
        now = self.clock()
        self._next_eval = now + self.config.evaluate_every
        findings = await anyio.to_thread.run_sync(self._detect)
        findings.extend(self.engine.step(self.store))
        at = round(now * 1e9)
        fresh = self.journal.update(findings, at)
        self.evaluations += 1
        b = MetricBatchBuilder(at)
        tags = (("optimizer", self.context.name),)
        b.add("revopipe.optimizer.recommendations", len(findings), MetricKind.GAUGE, "1", tags)
        b.add("revopipe.optimizer.series", len(self.store), MetricKind.GAUGE, "1", tags)
        events: tuple[Recommendation, ...] = tuple(f.recommendation(at) for f in fresh)
        return Batch(b.build(), events)

    def _detect(self) -> list[Finding]:
        # imported on first use: numpy and scipy would add to every `revopipe` command's start
        from revopipe_plugins.optimizer.leaks import leaks
        from revopipe_plugins.optimizer.regressions import change_points, trends

        cfg = self.config
        out: list[Finding] = []
        out.extend(change_points(self.store, cfg.changepoints, cfg.pvalue))
        out.extend(trends(self.store, cfg.trends))
        out.extend(leaks(self.store, cfg.leaks))
        for detector in DETECTORS:
            out.extend(detector(self.store, cfg.bottlenecks))
        return out

    async def control(self, action: str, params: Mapping[str, Any]) -> Any:
        if action == "recommendations":
            include = str(params.get("all", "false")).lower() in ("1", "true", "yes")
            return self.journal.recommendations(include_inactive=include)
        if action == "audit":
            try:
                limit = int(params.get("limit", 100))
            except (TypeError, ValueError):
                raise ControlError("limit must be a whole number, e.g. limit=50") from None
            return self.journal.audit(limit)
        if action == "evaluate":
            batch = await self.evaluate()
            # a control call has no way downstream: the next tick emits what it found
            self._held.append(batch)
            return {"new": [e.to_dict() for e in batch.events], "evaluations": self.evaluations}
        return await super().control(action, params)
