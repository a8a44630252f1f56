"""One run of the Rust generator: start it, take its per-second snapshots (blocking for the
CLI, off the event loop for the source), stop it, read its summary. The generator keeps
the GIL released while it waits, so either way Python stays responsive."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.to_thread

from revopipe import _core
from revopipe_plugins.loadtest.plan import LoadTestPlan

Snapshot = dict[str, Any]


class LoadRun:
    def __init__(self, plan: LoadTestPlan) -> None:
        self.plan = plan
        self.generator = _core.LoadGenerator(**plan.generator_args())
        self.snapshots: list[Snapshot] = []

    def __enter__(self) -> LoadRun:
        self.generator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Also on Ctrl-C or an error: the runtime thread must not outlive the run.
        self.generator.stop()

    def __iter__(self) -> Iterator[Snapshot]:
        """Snapshots as they come, until the run ends (or `stop()`)."""
        while True:
            try:
                snap = self.generator.next_snapshot(0.25)
            except StopIteration:
                return
            if snap is not None:
                self.snapshots.append(snap)
                yield snap

    async def snapshots_async(self) -> AsyncIterator[Snapshot]:
        while True:
            ended, snap = await anyio.to_thread.run_sync(self._next_or_end, 0.5)
            if ended:
                return
            if snap is not None:
                self.snapshots.append(snap)
                yield snap

    def _next_or_end(self, timeout: float) -> tuple[bool, Snapshot | None]:
        # StopIteration cannot cross into an asyncio future; a flag can.
        try:
            return False, self.generator.next_snapshot(timeout)
        except StopIteration:
            return True, None

    def stop(self) -> None:
        self.generator.stop()

    def summary(self) -> Snapshot:
        return self.generator.summary()
