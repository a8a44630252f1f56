"""`sink_batch`: let a sink that is the pipeline's bottleneck merge queued batches.

A sink is the bottleneck when it is busy writing for most of the wall time (the rate of
`revopipe.component.busy_time`) or its inbox drops events. Raising `batch_max` makes the
runtime hand it several queued batches as one write, which pays off for sinks with a cost
per write (a commit, a request, a flush). The change is judged by the sink's busy seconds
per event taken in: lower means each event costs less to write.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from revopipe.actions import Action, ActionConfig, MetricView, Proposal
from revopipe.tuning import Knob

BUSY = "revopipe.component.busy_time"
EVENTS_IN = "revopipe.component.events_in"
DROPPED = "revopipe.component.dropped"


class SinkBatchConfig(ActionConfig):
    busy_share: float = Field(
        default=0.5, gt=0.0, le=1.0, description="busy this share of the time = bottleneck"
    )
    window: float = Field(default=60.0, gt=0, description="seconds averaged")
    factor: float = Field(default=4.0, gt=1.0, le=64.0, description="batch_max multiplier")
    max_batch: int = Field(default=64, ge=2, le=1024, description="never raise beyond")


class SinkBatch(Action[SinkBatchConfig]):
    type_name = "sink_batch"
    Config = SinkBatchConfig
    description = "raises batch_max of a sink that is busy most of the time or dropping"

    def propose(self, view: MetricView, knobs: Sequence[Knob]) -> Sequence[Proposal]:
        cfg = self.config
        found = []
        for k in knobs:
            if k.kind != "sink" or k.key != "batch_max" or k.value >= cfg.max_batch:
                continue
            tags = {"component": k.component}
            busy_series = view.select(BUSY, tags)
            if not busy_series or not busy_series[0].times:
                continue
            now = busy_series[0].times[-1] + 1e-6
            busy = view.mean(BUSY, tags, now - cfg.window, now) or 0.0
            dropped = view.mean(DROPPED, tags, now - cfg.window, now) or 0.0
            if busy < cfg.busy_share and dropped <= 0.0:
                continue
            new = min(cfg.max_batch, k.maximum, max(k.value + 1, round(k.value * cfg.factor)))
            found.append(
                (
                    busy,
                    Proposal(
                        component=k.component,
                        changes={"batch_max": new},
                        title=f"let sink {k.component!r} merge up to {new:g} queued batches "
                        f"per write (batch_max {k.value:g} -> {new:g})",
                        reason=(
                            f"{k.component!r} was busy {busy * 100:.0f} % of the last "
                            f"{cfg.window:g} s"
                            + (f" and dropped {dropped:.3g} events/s" if dropped > 0 else "")
                        ),
                        measure_name=f"{k.component} busy seconds per event",
                        evidence={"busy_share": f"{busy:.3f}", "dropped_per_s": f"{dropped:.3g}"},
                    ),
                )
            )
        found.sort(key=lambda bp: -bp[0])
        return [p for _, p in found[:1]]

    def measure(
        self, view: MetricView, proposal: Proposal, since: float, until: float
    ) -> float | None:
        tags = {"component": proposal.component}
        busy = view.mean(BUSY, tags, since, until)
        events = view.mean(EVENTS_IN, tags, since, until)
        if busy is None or not events:
            return None
        return busy / events
