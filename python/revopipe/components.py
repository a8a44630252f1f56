"""Base classes for component types. A plugin subclasses `Source`, `Processor` or `Sink`,
sets `type_name` and `Config`, and returns the class from `revopipe_component_types`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from revopipe.batch import Batch
from revopipe.config.redact import Redactor
from revopipe.config.schema import ComponentConfig, ProcessorConfig, SinkConfig, SourceConfig
from revopipe.runtime.stats import ComponentStats
from revopipe.tuning import NoTuning, Tunable, Tuning

if TYPE_CHECKING:
    from revopipe.health import PipelineHealth
    from revopipe.plugins import Registry

Kind = Literal["source", "processor", "sink"]
ControlMode = Literal["read", "write"]
"""A control action either only reads (served on GET) or changes state (POST only)."""
Emit = Callable[[Batch], Awaitable[None]]
"""Sends a batch to every downstream component; awaits while a `block` edge is full."""

C = TypeVar("C", bound=ComponentConfig)


class ControlError(Exception):
    """Raised by `Component.control` to refuse a request; `status` is the HTTP status the
    control API answers with (400: bad parameters, 404: no such action or item, 409: the
    current state forbids it). The message is shown to the user: name the parameter and
    the fix."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ControlNotSupported(ControlError):
    """The component does not implement the requested control action (HTTP 404)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=404)


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
    tuning: Tuning = field(default_factory=NoTuning)
    """Live tuning of every component's declared `tunables` (used by optimizer actions)."""
    registry: Registry | None = None
    """The plugin registry the pipeline was built with, for components that look up
    classes other plugins provide (channels, optimizer actions)."""
    control: Callable[[str, str, Mapping[str, Any]], Awaitable[Any]] | None = None
    """`control(component, action, params)`: another component's control action, as the
    control API would call it (e.g. a dashboard acknowledging an alert); raises
    `ControlError`. None outside a pipeline."""
    config_of: Callable[[str], ComponentConfig | None] | None = None
    """Another component's validated config by name (e.g. where a sqlite sink keeps its
    file), or None for no such component."""
    redactor: Redactor = field(default_factory=Redactor)
    """The config's secret masker: a component that shows text to people (a web page, an
    API) passes every string through `redactor.text`."""
    health: Callable[[], PipelineHealth] | None = None
    """The pipeline's health as `/readyz` judges it (components and monitored services,
    `revopipe.health`). None outside a pipeline."""


class Component(Generic[C]):
    """Common lifecycle: `start()` before the first batch, `stop()` after the last.

    A component that raises is isolated by the runtime: it is marked unhealthy, counted
    and replaced by a fresh instance after a backoff; others keep running.
    """

    kind: ClassVar[Kind]
    type_name: ClassVar[str]
    Config: ClassVar[type[ComponentConfig]]
    description: ClassVar[str] = ""
    control_actions: ClassVar[Mapping[str, ControlMode]] = {}
    """The actions `control` answers, each "read" (may be served on GET, must not change
    state) or "write" (POST only, and only when the API is bound to loopback). The API
    refuses undeclared actions without calling `control`."""
    tunables: ClassVar[Mapping[str, Tunable]] = {}
    """Config keys (numbers) the runtime may change while the component runs, with their
    bounds; see `revopipe.tuning`. Declare a key only if the component re-reads
    `self.config.<key>` each time it uses it."""

    def __init__(self, config: C, context: ComponentContext) -> None:
        self.config = config
        self.context = context
        self.log = context.logger

    async def start(self) -> None:
        """Open resources. Called once per instance before any other method."""

    async def stop(self) -> None:
        """Release resources. Called once per instance, also after a failure."""

    async def control(self, action: str, params: Mapping[str, Any]) -> Any:
        """Answer a control request for a running pipeline (e.g. `revopipe alerts ack`).

        Called by the control API (`GET`/`POST /api/v1/components/<name>/control/<action>`)
        for an action declared in `control_actions`, on the pipeline's event loop. For a
        processor or sink it runs between two calls of `process`/`tick`/`write`/`flush` (never
        during one), so it may read and change the instance's state without locks; for a
        source it runs at any `await` of `run`. Keep it short: the component processes no
        batch meanwhile.

        `params` are the query string (GET; a key given twice maps to a list of strings)
        or the JSON object body (POST). Return a JSON-serialisable value; raise
        `ControlError(message, status)` for a bad request. Any other exception is answered
        with HTTP 500 and logged; it neither restarts the component nor marks it unhealthy.
        The default refuses every action (`ControlNotSupported`, HTTP 404).
        """
        actions = ", ".join(sorted(self.control_actions)) or "none"
        raise ControlNotSupported(
            f"component {self.context.name!r} ({self.type_name}) does not support the control "
            f"action {action!r}; its actions: {actions}"
        )


class Source(Component[C]):
    kind: ClassVar[Kind] = "source"
    Config: ClassVar[type[ComponentConfig]] = SourceConfig

    async def run(self, emit: Emit) -> None:
        """Produce batches with `await emit(batch)` until cancelled. Returning ends the
        source (a finite source); the pipeline stops once every source has ended.

        A source reading from a system that redelivers attaches `revopipe.acks.Ack`s to
        its batches and acknowledges upstream only when they report back. Its outputs are
        closed before `stop()` is called, so `stop()` may wait (bounded) for the acks of
        what the drain is still writing."""
        raise NotImplementedError


class Processor(Component[C]):
    kind: ClassVar[Kind] = "processor"
    Config: ClassVar[type[ComponentConfig]] = ProcessorConfig
    tick_interval: float | None = None
    """If set, `tick()` is called this often (seconds), e.g. to close a window."""
    holds_acks: bool = False
    """Read after each `process()`, so an instance may set it from its config. False: the
    runtime moves an input batch's `acks` (see `revopipe.acks`) onto what
    `process()` returns, or releases them when it returns nothing. True: the processor
    keeps data across calls (a window) and takes the acks over itself: it must attach them
    to the output that carries the data (`Batch.with_acks`) or release them."""

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
    tunables: ClassVar[Mapping[str, Tunable]] = {
        "batch_max": Tunable(1, 1024, "queued batches the runtime merges into one write")
    }

    async def write(self, batch: Batch) -> None:
        """Write one batch. Raising makes the runtime retry the same batch with backoff,
        then dead-letter it after `max_retries`."""
        raise NotImplementedError

    async def flush(self) -> None:
        """Make everything written durable; called on drain before `stop()`."""


ComponentClass = type[Component[Any]]
