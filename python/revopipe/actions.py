"""Optimizer actions: automated changes the `optimizer` processor may apply.

An action looks at the metrics the optimizer holds and proposes changes to tunable config
keys (`revopipe.tuning`) of components of the running pipeline. The optimizer applies a
proposal only when its `actions.mode = "apply"` (default "off"; "dry_run" records what
would change), measures `Action.measure` before and after, keeps the change when the
after-figure is not worse, and reverts it otherwise, recording every step in its audit
trail. A plugin provides actions with the `revopipe_optimizer_actions` hook::

    class CapBatches(revopipe.actions.Action[CapConfig]):
        type_name = "cap_batches"
        Config = CapConfig

        def propose(self, view, knobs):
            ...
            return [Proposal(component="out", changes={"batch_max": 8}, ...)]

        def measure(self, view, proposal, since, until):
            return view.mean("revopipe.component.busy_time", {"component": "out"}, since, until)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from revopipe.events import Tags
from revopipe.tuning import Knob


class ActionConfig(BaseModel):
    """An action's table under `[processors.<optimizer>.actions.<type>]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Series:
    """One series as the optimizer holds it: wall-clock seconds and values. A counter's
    values are per-second rates between consecutive points (resets handled)."""

    name: str
    tags: Tags
    times: Sequence[float]
    values: Sequence[float]


class MetricView(Protocol):
    """Read access to the recent metrics the optimizer holds."""

    def select(self, name: str, tags: Mapping[str, str] | None = None) -> list[Series]:
        """Every series called `name` whose tags include all of `tags`."""
        ...

    def mean(
        self, name: str, tags: Mapping[str, str] | None, since: float, until: float
    ) -> float | None:
        """The mean of every point of the matching series with since <= time < until, or
        None when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class Proposal:
    """One change an action wants: new values for tunable keys of one component."""

    component: str
    changes: Mapping[str, float]
    title: str
    """What changes, for people: "lengthen source 'system' interval 10 s -> 20 s"."""
    reason: str
    """Why, with the figures: "revopipe used 9 % of a core over 60 s; budget 5 %"."""
    measure_name: str
    """What `measure` reports (lower is better), for the audit trail."""
    evidence: Mapping[str, str] = field(default_factory=dict)


C = TypeVar("C", bound=ActionConfig)


class Action(Generic[C]):
    """Base class of optimizer actions. Subclasses set `type_name` and `Config`."""

    type_name: ClassVar[str]
    Config: ClassVar[type[ActionConfig]] = ActionConfig
    description: ClassVar[str] = ""

    def __init__(self, config: C) -> None:
        self.config = config

    def propose(self, view: MetricView, knobs: Sequence[Knob]) -> Sequence[Proposal]:
        """Called on each optimizer evaluation while none of this action's changes is being
        measured. `knobs` are the pipeline's tunable keys with their current values. Return
        the changes to make now (usually none); each must name a knob in `knobs` and stay
        within its bounds."""
        raise NotImplementedError

    def measure(
        self, view: MetricView, proposal: Proposal, since: float, until: float
    ) -> float | None:
        """The figure that judges `proposal`, over wall-clock seconds [since, until):
        lower is better. Called once for the window before the change and once for the
        window after it; None (not enough data) keeps the change unjudged and reverts it."""
        raise NotImplementedError
