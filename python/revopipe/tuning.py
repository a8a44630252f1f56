"""Knobs the runtime may turn while a pipeline runs.

A component type declares which keys of its config are safe to change live, with bounds,
in `Component.tunables`; every sink has `batch_max` (how many queued batches the runtime
merges into one `write`). The optimizer's actions change them through `Tuning`, which the
runtime hands each component in `ComponentContext.tuning`; nothing else does.

A component sees a change by reading `self.config` again: the runtime swaps in a copy of
the config with the new values, on the live instance and for any instance made after a
restart. Components whose loop caches a tunable value must re-read it every iteration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Tunable:
    """One config key that may change while the component runs, within [minimum, maximum]."""

    minimum: float
    maximum: float
    description: str = ""


@dataclass(frozen=True, slots=True)
class Knob:
    """A tunable key of one component, with its current value."""

    component: str
    kind: str
    type: str
    key: str
    value: float
    minimum: float
    maximum: float


class TuningError(ValueError):
    """A retune request the runtime refuses; the message names the component, the key and
    what is allowed."""


class Tuning(Protocol):
    """What the runtime offers for live tuning (implemented by the running pipeline)."""

    def knobs(self) -> list[Knob]:
        """Every tunable key of every component, with its current value."""
        ...

    def retune(self, component: str, changes: Mapping[str, float]) -> dict[str, float]:
        """Set `changes` on `component`'s config, live; returns the previous values of the
        changed keys (pass them back to undo). Raises `TuningError` for an unknown
        component, an undeclared key or a value out of bounds, changing nothing."""
        ...


class NoTuning:
    """For components run outside a pipeline (tests, tools): nothing is tunable."""

    def knobs(self) -> list[Knob]:
        return []

    def retune(self, component: str, changes: Mapping[str, float]) -> dict[str, float]:
        raise TuningError(f"component {component!r} does not run in a pipeline; nothing to tune")


def check_changes(
    component: str, tunables: Mapping[str, Tunable], changes: Mapping[str, Any]
) -> dict[str, float]:
    """`changes` as floats, after checking each key is declared and in bounds."""
    out: dict[str, float] = {}
    for key, value in changes.items():
        spec = tunables.get(key)
        if spec is None:
            known = ", ".join(sorted(tunables)) or "none"
            raise TuningError(
                f"component {component!r}: {key!r} is not tunable while running; "
                f"tunable keys: {known}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TuningError(
                f"component {component!r}: {key} must be a number, got {type(value).__name__}"
            )
        if not spec.minimum <= value <= spec.maximum:
            raise TuningError(
                f"component {component!r}: {key} = {value:g} is outside "
                f"{spec.minimum:g}..{spec.maximum:g}"
            )
        out[key] = float(value)
    return out
