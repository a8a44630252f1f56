"""Dashboard widgets: the panels the `dashboard` sink shows, built-in or from a plugin.

A widget turns what the dashboard holds (recent metric series, recent events, the
pipeline's components) into a JSON-serialisable dict, served by
`GET /api/widgets/{id}` and pushed over the live stream whenever it changes. The page
draws any widget from the generic keys of that dict, so a plugin's widget needs no
JavaScript:

- `cards`: `[{"label", "value", "unit", "text", "status", "spark": {"x": [...], "y": [...]}}]`
  (big numbers with an optional sparkline; `status` is healthy/degraded/unhealthy);
- `figure`: a plotly.js figure `{"data": [...traces], "layout": {...}}`;
- `table`: `{"columns": [{"key", "label"}], "rows": [{...}]}`; a row may carry
  `"_actions": [{"label", "post", "body", "confirm"}]`, buttons the page sends as POSTs
  to the dashboard (CSRF-protected);
- `ranges` / `range`: a range selector (e.g. `["1h", "6h", "24h", "7d"]`); the page asks
  again with `?range=...`;
- `empty`: a message shown when there is nothing to show yet.

A plugin provides widgets with the `revopipe_dashboard_widgets` hook::

    class QueueWidget(revopipe.widgets.Widget[revopipe.widgets.WidgetConfig]):
        type_name = "queues"
        title = "Queues"
        default_series = ("queue.depth",)

        async def data(self, params):
            rows = [{"queue": s.tag_dict.get("q", ""), "depth": s.last}
                    for s in self.source.series("queue.depth")]
            return {"table": {"columns": [{"key": "queue", "label": "Queue"},
                                          {"key": "depth", "label": "Depth"}],
                              "rows": rows}}
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from revopipe.config.units import Duration
from revopipe.events import Event, Health, Tags
from revopipe.health import HealthEntry
from revopipe.runtime.stats import ComponentStats

WIDGET_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class WidgetConfig(BaseModel):
    """One `[[sinks.<dashboard>.widgets]]` entry. A widget type with options of its own
    subclasses this and names it as its `Config`; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="the widget type, e.g. 'system' (`revopipe plugins` lists them)")
    id: str = Field(
        default="",
        pattern=WIDGET_ID.pattern,
        description="unique within the dashboard: the `{id}` of /api/widgets/{id} (default: type)",
    )
    title: str = Field(default="", description="heading shown on the page (default: the type's)")
    x: int = Field(default=0, ge=0, le=11, description="grid column, 0-11")
    y: int = Field(default=0, ge=0, le=1000, description="grid row")
    w: int = Field(default=4, ge=1, le=12, description="width in grid columns (12 = full width)")
    h: int = Field(default=3, ge=1, le=24, description="height in grid rows")
    refresh: Duration | None = Field(
        default=None,
        gt=0,
        description="at most this often the widget is recomputed and pushed, e.g. '2s' "
        "(default: the type's, never below the dashboard's `refresh`)",
    )
    series: list[str] = Field(
        default_factory=list,
        description="metric names or globs the widget shows (default: the type's)",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="only series with these tag values"
    )

    @model_validator(mode="after")
    def _fits(self) -> WidgetConfig:
        if self.x + self.w > 12:
            raise ValueError(
                f"x = {self.x} and w = {self.w} end past the 12 grid columns; make "
                f"x + w at most 12 (e.g. w = {12 - self.x})"
            )
        return self


@dataclass(frozen=True, slots=True)
class SeriesView:
    """A recent series the dashboard holds: times in Unix seconds, oldest first."""

    name: str
    tags: Tags
    unit: str
    times: Sequence[float]
    values: Sequence[float]

    @property
    def tag_dict(self) -> dict[str, str]:
        return dict(self.tags)

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    @property
    def last_time(self) -> float | None:
        return self.times[-1] if self.times else None


class WidgetSource(Protocol):
    """What the dashboard gives its widgets to read."""

    def series(self, pattern: str, tags: Mapping[str, str] | None = None) -> list[SeriesView]:
        """Recent series whose name equals `pattern` (or matches it as a glob with `*`,
        `?`, `[`) and whose tags include all of `tags`. Only names some widget asked for
        (`patterns()`) are held."""
        ...

    def events(self, type_name: str) -> list[Event]:
        """The latest events of one type ('alert', 'recommendation', ...), oldest first."""
        ...

    def health_events(self) -> Mapping[str, Health]:
        """The latest `Health` event of every subject seen."""
        ...

    def health_entries(self) -> list[HealthEntry]:
        """Every component and monitored service with its status: the pipeline's own view
        (`ComponentContext.health`, what `/readyz` judges), plus services known only from
        `Health` events that reached the dashboard (e.g. from another revopipe)."""
        ...

    def pipeline_stats(self) -> Sequence[ComponentStats]:
        """Every component's counters and health."""
        ...

    @property
    def control(self) -> Callable[[str, str, Mapping[str, Any]], Awaitable[Any]] | None:
        """Another component's control action (see `ComponentContext.control`)."""
        ...

    @property
    def alerts_component(self) -> str | None:
        """The alerts processor the dashboard acts on, if any."""
        ...

    @property
    def optimizer_component(self) -> str | None:
        """The optimizer processor whose recommendations it shows, if any."""
        ...

    @property
    def history_path(self) -> Path | None:
        """The database of the `sqlite` sink named by the dashboard's `history`, if any."""
        ...


C = TypeVar("C", bound=WidgetConfig)


class Widget(Generic[C]):
    """Base class of dashboard widgets. Subclasses set `type_name` (and `Config` for
    options of their own) and implement `data`."""

    type_name: ClassVar[str]
    Config: ClassVar[type[WidgetConfig]] = WidgetConfig
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_series: ClassVar[Sequence[str]] = ()
    """Metric names or globs shown when the config gives no `series`."""
    default_refresh: ClassVar[float | None] = None
    """Seconds between recomputations unless the config sets `refresh`; None follows the
    dashboard's `refresh`. Never below the dashboard's `refresh`."""
    default_size: ClassVar[tuple[int, int]] = (4, 3)
    """(w, h) on the grid when the layout is the default one."""
    polls: ClassVar[bool] = False
    """True when `data` reads more than the held series and events (a control action, a
    database, the pipeline's counters): it is then recomputed every `refresh` even when
    no batch arrived."""

    def __init__(self, config: C, source: WidgetSource) -> None:
        self.config = config
        self.source = source

    @property
    def id(self) -> str:
        return self.config.id or self.type_name

    def patterns(self) -> Sequence[str]:
        """The metric names/globs the dashboard must hold for this widget."""
        return self.config.series or list(self.default_series)

    async def data(self, params: Mapping[str, str]) -> dict[str, Any]:
        """This widget's current data (see the module doc for the keys the page draws).

        `params` is the query string of `GET /api/widgets/{id}` (empty for the live
        stream). Runs on the pipeline's event loop: keep it short, and read a database
        through `anyio.to_thread.run_sync`. Raise `WidgetError` for a bad parameter."""
        raise NotImplementedError


class WidgetError(Exception):
    """A widget refused a request (HTTP 400 unless `status` says otherwise); the message
    is shown to the user: name the parameter and the fix."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


WidgetClass = type[Widget[Any]]
