"""Discards batches. Useful to measure sources and processors without sink cost."""

from __future__ import annotations

from revopipe.batch import Batch
from revopipe.components import Sink
from revopipe.config import SinkConfig


class BlackholeConfig(SinkConfig):
    pass


class BlackholeSink(Sink[BlackholeConfig]):
    type_name = "blackhole"
    Config = BlackholeConfig
    description = "discards everything (for benchmarks); counts in its stats"

    async def write(self, batch: Batch) -> None:
        return None

    async def stop(self) -> None:
        s = self.context.stats
        self.log.info(
            "blackhole %r discarded %d events in %d batches",
            self.context.name,
            s.events_in,
            s.batches_in,
        )
