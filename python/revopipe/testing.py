"""Helpers for testing a component without a whole pipeline (for plugin authors too)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio

from revopipe.batch import Batch
from revopipe.components import Component, ComponentContext, Source
from revopipe.runtime.stats import ComponentStats

C = TypeVar("C", bound=Component[Any])


def make(
    cls: type[C],
    config: Mapping[str, Any],
    data_dir: Path,
    name: str = "under_test",
    extras: Mapping[str, Any] | None = None,
) -> C:
    """An instance of a component class with its config validated as `revopipe validate`
    would, and a context like the runtime gives."""
    cfg = cls.Config.model_validate({"type": cls.type_name, **config})
    stats = ComponentStats(name, cls.kind, cls.type_name)
    ctx = ComponentContext(
        name=name,
        data_dir=data_dir,
        logger=logging.getLogger(f"revopipe.test.{name}"),
        stats=stats,
        pipeline_stats=lambda: [stats],
        extras=extras or {},
    )
    return cls(cfg, ctx)


async def collect(source: Source[Any], seconds: float) -> list[Batch]:
    """Run a started-and-stopped source for `seconds` (or until it ends); its batches."""
    batches: list[Batch] = []

    async def emit(batch: Batch) -> None:
        batches.append(batch)

    await source.start()
    try:
        with anyio.move_on_after(seconds):
            await source.run(emit)
    finally:
        await source.stop()
    return batches
