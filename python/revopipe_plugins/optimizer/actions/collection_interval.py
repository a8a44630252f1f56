"""`collection_interval`: lengthen a collection interval when revopipe's own CPU use is
over its budget.

revopipe's CPU is the rate of the `process.cpu.time` counter the `internal` source reports
for this process (so the optimizer needs an `internal` source among its inputs). The source
chosen is the one collecting most often (the shortest `interval`), because halving the
busiest collection saves the most; the change is judged by that same CPU rate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pydantic import Field

from revopipe.actions import Action, ActionConfig, MetricView, Proposal
from revopipe.tuning import Knob

CPU_TIME = "process.cpu.time"


class CollectionIntervalConfig(ActionConfig):
    cpu_budget: float = Field(
        default=0.05, gt=0.0, le=64.0, description="cores revopipe may use, e.g. 0.05 = 5 %"
    )
    window: float = Field(default=60.0, gt=0, description="seconds of CPU use averaged")
    factor: float = Field(default=2.0, gt=1.0, le=10.0, description="interval multiplier")
    max_interval: float = Field(default=300.0, gt=0, description="never lengthen beyond (s)")
    sources: list[str] = Field(
        default_factory=list, description="sources it may change (default: any with interval)"
    )


class CollectionInterval(Action[CollectionIntervalConfig]):
    type_name = "collection_interval"
    Config = CollectionIntervalConfig
    description = "lengthens the busiest source's interval when revopipe's CPU is over budget"

    def __init__(self, config: CollectionIntervalConfig) -> None:
        super().__init__(config)
        self._pid = {"process.pid": str(os.getpid())}

    def _cpu(self, view: MetricView, since: float, until: float) -> float | None:
        return view.mean(CPU_TIME, self._pid, since, until)

    def propose(self, view: MetricView, knobs: Sequence[Knob]) -> Sequence[Proposal]:
        cfg = self.config
        series = view.select(CPU_TIME, self._pid)
        if not series or not series[0].times:
            return []
        now = series[0].times[-1]
        cpu = self._cpu(view, now - cfg.window, now + 1e-6)
        if cpu is None or cpu <= cfg.cpu_budget:
            return []
        candidates = [
            k
            for k in knobs
            if k.kind == "source"
            and k.key == "interval"
            and (not cfg.sources or k.component in cfg.sources)
            and k.value * cfg.factor <= min(cfg.max_interval, k.maximum)
        ]
        if not candidates:
            return []
        k = min(candidates, key=lambda k: k.value)
        new = k.value * cfg.factor
        return [
            Proposal(
                component=k.component,
                changes={"interval": new},
                title=f"lengthen source {k.component!r} interval {k.value:g} s -> {new:g} s",
                reason=(
                    f"revopipe used {cpu * 100:.1f} % of a core over {cfg.window:g} s; budget "
                    f"{cfg.cpu_budget * 100:.1f} %; {k.component!r} collects most often"
                ),
                measure_name="revopipe CPU (cores)",
                evidence={"cpu": f"{cpu:.4f}", "budget": f"{cfg.cpu_budget:g}"},
            )
        ]

    def measure(
        self, view: MetricView, proposal: Proposal, since: float, until: float
    ) -> float | None:
        return self._cpu(view, since, until)
