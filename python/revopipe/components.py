"""Base classes for component types. A plugin subclasses `Source`, `Processor` or `Sink`,
sets `type_name` and `Config`, and returns the class from `revopipe_component_types`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from revopipe.batch import Batch
from revopipe.config.schema import ComponentConfig, ProcessorConfig, SinkConfig, SourceConfig
from revopipe.runtime.stats import ComponentStats

Kind = Literal["source", "processor", "sink"]
Emit = Callable[[Batch], Awaitable[None]]
"""Sends a batch to every downstream component; awaits while a `block` edge is full."""

C = TypeVar("C", bound=ComponentConfig)


@dataclass(frozen=True, slots=True)
class ComponentContext:
    """What the runtime hands a component besides its config."""

    name: str
    data_dir: Path
    logger: logging.Logger
    stats: ComponentStats
    pipeline_stats: Callable[[], Sequence[ComponentStats]]
    """Every component's counters, for sources that report on the pipeline itself."""
    extras: Mapping[str, Any]
    """Values given by an embedding program (`Pipeline(..., extras=...)`)."""


class Component(Generic[C]):
    """Common lifecycle: `start()` before the first batch, `stop()` after the last.

    A component that raises is isolated by the runtime: it is marked unhealthy, counted
    and replaced by a fresh instance after a backoff; others keep running.
    """

    kind: ClassVar[Kind]
    type_name: ClassVar[str]
    Config: ClassVar[type[ComponentConfig]]
    description: ClassVar[str] = ""

    def __init__(self, config: C, context: ComponentContext) -> None:
        self.config = config
        self.context = context
        self.log = context.logger

    async def start(self) -> None:
        """Open resources. Called once per instance before any other method."""

    async def stop(self) -> None:
        """Release resources. Called once per instance, also after a failure."""


class Source(Component[C]):
    kind: ClassVar[Kind] = "source"
    Config: ClassVar[type[ComponentConfig]] = SourceConfig

    async def run(self, emit: Emit) -> None:
        """Produce batches with `await emit(batch)` until cancelled. Returning ends the
        source (a finite source); the pipeline stops once every source has ended."""
        raise NotImplementedError


class Processor(Component[C]):
    kind: ClassVar[Kind] = "processor"
    Config: ClassVar[type[ComponentConfig]] = ProcessorConfig
    tick_interval: float | None = None
    """If set, `tick()` is called this often (seconds), e.g. to close a window."""

    async def process(self, batch: Batch) -> Batch | Sequence[Batch] | None:
        """Transform one batch. Return what to pass downstream (None passes nothing)."""
        raise NotImplementedError

    async def tick(self) -> Batch | Sequence[Batch] | None:
        """Timer hook, every `tick_interval` seconds."""
        return None

    async def flush(self) -> Batch | Sequence[Batch] | None:
        """Called once when the inputs have ended (drain): emit what is still held."""
        return None


class Sink(Component[C]):
    kind: ClassVar[Kind] = "sink"
    Config: ClassVar[type[ComponentConfig]] = SinkConfig

    async def write(self, batch: Batch) -> None:
        """Write one batch. Raising makes the runtime retry the same batch with backoff,
        then dead-letter it after `max_retries`."""
        raise NotImplementedError

    async def flush(self) -> None:
        """Make everything written durable; called on drain before `stop()`."""


ComponentClass = type[Component[Any]]
