"""Stage schedules for the load generator: the six test types as presets of one shape engine.

A schedule is a start target and a list of stages; each stage ramps the target LINEARLY from
the previous stage's end value (the first from `start_target`) to its own `target` over its
`duration` seconds, exactly as `revopipe._core.LoadGenerator` runs it. The target is virtual
users for the closed model and arrivals per second for the open model. `target_at` is the
reference for that shape (tests and the live display use it).

Shapes (T = the user's target, D = the duration; every preset lasts exactly D):

- smoke: a constant min(T, 2) from the first second: is the endpoint up and sane at all.
- load: ramp 0 -> T over 10 % of D (at least 5 s, at most half of D), hold T, ramp T -> 0
  over the last 5 %.
- stress: six steps of 25 % of T up to 150 % of T (25, 50, ... 150 %); each step ramps
  over the first 10 % of its time and holds the rest; ramp to 0 over the last 5 % of D.
- spike: hold 10 % of T for 30 % of D, jump to T within J = min(1 s, 2 % of D), hold T for
  20 % of D, drop back to 10 % of T within J, hold it (recovery) until the end.
- volume: the load shape, flagged `volume=True`: the CLI expands the request list with
  `expand_volume` so requests cycle through many distinct URLs (a query parameter) and, for
  POST/PUT/PATCH without a body, carry a large generated body.
- endurance: ramp 0 -> T over 5 % of D (5 s .. 5 min), hold T, ramp to 0 over 2 % of D (at
  most 1 min); `drift(snapshots)` compares the first and last 10 % of the run.
- custom: the user's own stages, "30s:50" strings, {"duration": "30s", "target": 50} tables
  or (seconds, target) pairs.

No preset uses a zero-length stage: the core ramps over each stage's duration, and a short
ramp is what a "sudden" step means at one-second reporting resolution.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload
from urllib.parse import urlsplit, urlunsplit

from revopipe.config import parse_duration

ModelHint = Literal["closed", "open"] | None

#: (method, url, headers, body, weight): one entry of `LoadGenerator(requests=...)`.
RequestSpec = tuple[str, str, list[tuple[str, str]], bytes | None, float]

SMOKE_MAX_TARGET = 2.0
DEFAULT_DURATIONS: dict[str, float] = {
    "smoke": 30.0,
    "load": 300.0,
    "stress": 600.0,
    "spike": 120.0,
    "volume": 300.0,
    "endurance": 3600.0,
}


@dataclass(frozen=True)
class Stage:
    """Ramp linearly to `target` over `duration` seconds."""

    duration: float
    target: float


@dataclass(frozen=True)
class Schedule:
    """What to run: the target at t=0, the stages, and the model the preset is meant for
    when the user chose none (None: either fits). `volume` asks for `expand_volume`."""

    start_target: float
    stages: tuple[Stage, ...]
    model_hint: ModelHint = None
    kind: str = "custom"
    volume: bool = False

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.stages)

    @property
    def peak(self) -> float:
        return max([self.start_target, *(s.target for s in self.stages)])

    def target_at(self, t: float) -> float:
        return _target_at(self.stages, self.start_target, t)

    def as_core(self) -> list[tuple[float, float]]:
        """The `stages` argument of `revopipe._core.LoadGenerator`."""
        return [(s.duration, s.target) for s in self.stages]


@overload
def target_at(schedule: Schedule, t: float, /) -> float: ...
@overload
def target_at(stages: Sequence[Stage], start_target: float, t: float, /) -> float: ...
def target_at(schedule: Schedule | Sequence[Stage], *args: float) -> float:
    """The scheduled target at `t` seconds: `target_at(schedule, t)` or
    `target_at(stages, start_target, t)`. Before 0 it is the start target; after the
    end, the last stage's target."""
    if isinstance(schedule, Schedule):
        (t,) = args
        return schedule.target_at(t)
    start_target, t = args
    return _target_at(schedule, start_target, t)


def _target_at(stages: Sequence[Stage], start_target: float, t: float) -> float:
    previous = start_target
    elapsed = 0.0
    for stage in stages:
        end = elapsed + stage.duration
        if t < end:
            if t <= elapsed or stage.duration <= 0:
                return previous
            return previous + (stage.target - previous) * (t - elapsed) / stage.duration
        previous = stage.target
        elapsed = end
    return previous


def _check(name: str, target: float, duration: float) -> None:
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"loadtest {name}: target must be a positive number, got {target!r}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(
            f"loadtest {name}: duration must be positive, got {duration!r} (e.g. '30s', '5m')"
        )


def _ramp_hold_down(
    name: str, target: float, duration: float, up: float, down: float
) -> tuple[Stage, ...]:
    _check(name, target, duration)
    up = min(up, duration / 2)
    down = min(down, duration - up)
    hold = duration - up - down
    stages = [Stage(up, target), Stage(hold, target), Stage(down, 0.0)]
    # A very short run can leave no hold or no ramp down; the core gets no empty stage.
    return tuple(s for s in stages if s.duration > 0)


def smoke(target: float = 1.0, duration: float = DEFAULT_DURATIONS["smoke"]) -> Schedule:
    """A constant min(target, 2) users (or req/s) for `duration` (30 s): the endpoint answers
    and the thresholds are sane before a real test is spent on it."""
    _check("smoke", target, duration)
    level = min(target, SMOKE_MAX_TARGET)
    return Schedule(level, (Stage(duration, level),), "closed", "smoke")


def load(target: float, duration: float = DEFAULT_DURATIONS["load"]) -> Schedule:
    """Ramp 0 -> target over 10 % of the duration (at least 5 s, at most half), hold the
    target, ramp back to 0 over the last 5 %: behaviour at the expected load."""
    stages = _ramp_hold_down("load", target, duration, max(0.1 * duration, 5.0), 0.05 * duration)
    return Schedule(0.0, stages, None, "load")


STRESS_LEVELS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def stress(target: float, duration: float = DEFAULT_DURATIONS["stress"]) -> Schedule:
    """Steps of 25 % of the target up to 150 %: each step ramps over the first 10 % of its
    share of the time and holds the rest; the last 5 % of the duration ramps to 0. Where
    does the service bend, and does it recover?"""
    _check("stress", target, duration)
    down = 0.05 * duration
    step = (duration - down) / len(STRESS_LEVELS)
    stages: list[Stage] = []
    for level in STRESS_LEVELS:
        stages += [Stage(0.1 * step, level * target), Stage(0.9 * step, level * target)]
    stages.append(Stage(down, 0.0))
    return Schedule(0.0, tuple(stages), None, "stress")


SPIKE_BASE = 0.1


def spike(target: float, duration: float = DEFAULT_DURATIONS["spike"]) -> Schedule:
    """Hold 10 % of the target for 30 % of the duration, jump to the target within
    J = min(1 s, 2 % of the duration), hold it for 20 %, drop back to 10 % within J and hold
    until the end: the recovery after a burst. Meant for the open model (a closed model
    slows its own arrivals when the service stalls, hiding the spike's queueing)."""
    _check("spike", target, duration)
    base = SPIKE_BASE * target
    jump = min(1.0, 0.02 * duration)
    stages = (
        Stage(0.3 * duration, base),
        Stage(jump, target),
        Stage(0.2 * duration, target),
        Stage(jump, base),
        Stage(0.5 * duration - 2 * jump, base),
    )
    return Schedule(base, stages, "open", "spike")


def volume(target: float, duration: float = DEFAULT_DURATIONS["volume"]) -> Schedule:
    """The load shape with `volume=True`: the CLI passes its requests through
    `expand_volume`, so the service sees many distinct URLs (caches miss) and large bodies."""
    stages = _ramp_hold_down("volume", target, duration, max(0.1 * duration, 5.0), 0.05 * duration)
    return Schedule(0.0, stages, None, "volume", volume=True)


def endurance(target: float, duration: float = DEFAULT_DURATIONS["endurance"]) -> Schedule:
    """Ramp 0 -> target over 5 % of the duration (5 s .. 5 min), hold for a long time, ramp
    to 0 over 2 % (at most 1 min). `drift` on the snapshots shows latency creeping up."""
    up = min(max(0.05 * duration, 5.0), 300.0)
    down = min(0.02 * duration, 60.0)
    stages = _ramp_hold_down("endurance", target, duration, up, down)
    return Schedule(0.0, stages, None, "endurance")


PRESETS: dict[str, Callable[[float, float], Schedule]] = {
    "smoke": smoke,
    "load": load,
    "stress": stress,
    "spike": spike,
    "volume": volume,
    "endurance": endurance,
}


def preset(name: str, target: float, duration: float | None = None) -> Schedule:
    """The preset `name` for `target` and `duration` (None: the preset's default)."""
    try:
        make = PRESETS[name]
    except KeyError:
        raise ValueError(
            f"loadtest: unknown test type {name!r}; use one of {', '.join(PRESETS)} or custom "
            "stages"
        ) from None
    return make(target, DEFAULT_DURATIONS[name] if duration is None else duration)


StageSpec = str | Mapping[str, Any] | tuple[Any, Any] | Stage


def _parse_target(value: object, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: target must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{where}: target must be a number, got {value!r}") from None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: target must be a number >= 0, got {value!r}")
    return float(value)


def _parse_stage_duration(value: object, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"{where}: duration: {exc}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{where}: duration must be > 0 (e.g. '30s'), got {value!r}")
    return seconds


def parse_stage(spec: StageSpec, index: int = 0) -> Stage:
    """One custom stage: "30s:50", {"duration": "30s", "target": 50}, (30.0, 50) or a Stage."""
    where = f"loadtest stages[{index}]"
    if isinstance(spec, Stage):
        return Stage(_parse_stage_duration(spec.duration, where), _parse_target(spec.target, where))
    if isinstance(spec, str):
        duration, sep, target = spec.partition(":")
        if not sep:
            raise ValueError(f"{where}: expected 'DURATION:TARGET' like '30s:50', got {spec!r}")
        return Stage(_parse_stage_duration(duration.strip(), where), _parse_target(target, where))
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"duration", "target"}
        if unknown or "duration" not in spec or "target" not in spec:
            raise ValueError(
                f"{where}: a stage table needs exactly the keys 'duration' and 'target', "
                f'e.g. {{duration = "30s", target = 50}}; got {sorted(spec)}'
            )
        return Stage(
            _parse_stage_duration(spec["duration"], where), _parse_target(spec["target"], where)
        )
    if isinstance(spec, tuple) and len(spec) == 2:
        return Stage(_parse_stage_duration(spec[0], where), _parse_target(spec[1], where))
    raise ValueError(f"{where}: expected '30s:50' or a table, got {spec!r}")


def custom(
    stages: Iterable[StageSpec], start_target: float = 0.0, model_hint: ModelHint = None
) -> Schedule:
    """The user's stages, in order; each ramps from the previous target (the first from
    `start_target`) to its own over its duration."""
    parsed = tuple(parse_stage(s, i) for i, s in enumerate(stages))
    if not parsed:
        raise ValueError("loadtest stages: give at least one stage, e.g. ['30s:50', '1m:50']")
    return Schedule(_parse_target(start_target, "loadtest start_target"), parsed, model_hint)


VOLUME_PARAM = "revopipe_volume"
VOLUME_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{name}={value}" if parts.query else f"{name}={value}"
    return urlunsplit(parts._replace(query=query))


def expand_volume(
    requests: Sequence[RequestSpec], distinct: int = 1000, body_size: int = 0
) -> list[RequestSpec]:
    """The volume test's request list: each request becomes `distinct` requests whose URLs
    differ by a `revopipe_volume=<i>` query parameter (so URL-keyed caches miss), each with
    1/distinct of the original weight (the mix stays the same). With `body_size`, POST/PUT/
    PATCH requests without a body get a body of that many bytes; a given body is kept, as
    its content type is the user's."""
    if distinct < 1:
        raise ValueError(f"loadtest volume: distinct URLs must be >= 1, got {distinct}")
    if body_size < 0:
        raise ValueError(f"loadtest volume: body size must be >= 0, got {body_size}")
    filler = b"x" * body_size if body_size else None
    out: list[RequestSpec] = []
    for method, url, headers, body, weight in requests:
        if body is None and filler is not None and method.upper() in VOLUME_BODY_METHODS:
            body = filler
        for i in range(distinct):
            url_i = _with_param(url, VOLUME_PARAM, str(i))
            out.append((method, url_i, headers, body, weight / distinct))
    return out


@dataclass(frozen=True)
class Drift:
    """A metric's median over the first and over the last `fraction` of a run."""

    metric: str
    first: float
    last: float

    @property
    def change(self) -> float:
        return self.last - self.first

    @property
    def relative(self) -> float:
        """(last - first) / first; inf when it rose from 0."""
        if self.first == 0:
            return 0.0 if self.last == 0 else math.inf
        return self.change / self.first


def _lookup(snapshot: Mapping[str, Any], path: str) -> float | None:
    value: Any = snapshot
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def drift(
    snapshots: Sequence[Mapping[str, Any]], metric: str = "latency.p99", fraction: float = 0.1
) -> Drift | None:
    """How `metric` (a dotted key of the per-second snapshots: "latency.p99", or e.g. a
    "memory_rss" the caller added) moved between the first and the last `fraction` of the
    snapshots, as medians (one slow second does not make a drift). Seconds without requests
    are skipped for latency metrics. None when fewer than two usable snapshots."""
    if not 0 < fraction <= 0.5:
        raise ValueError(f"drift: fraction must be in (0, 0.5], got {fraction}")
    values: list[float] = []
    for snap in snapshots:
        if metric.startswith("latency.") and not snap.get("requests"):
            continue
        value = _lookup(snap, metric)
        if value is not None:
            values.append(value)
    if len(values) < 2:
        return None
    n = max(1, int(len(values) * fraction))
    return Drift(metric, statistics.median(values[:n]), statistics.median(values[-n:]))
