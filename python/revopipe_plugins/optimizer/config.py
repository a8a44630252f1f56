"""The `optimizer` processor's config: what to watch, how sure to be, what may be changed."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from revopipe.config import Duration, ProcessorConfig
from revopipe.config.errors import validation_text
from revopipe.plugins import PluginError, Registry


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChangePointWatch(_Table):
    """Change-point detection on every series matching `metric` (a glob)."""

    metric: str = Field(description="metric name or glob, e.g. 'http.server.*.p95'")
    tags: dict[str, str] = Field(default_factory=dict, description="only series with these tags")
    higher_is_worse: bool = Field(
        default=True, description="a rise is a regression (latency); false for throughput"
    )
    min_change: float = Field(
        default=0.10, ge=0.0, description="smallest relative shift reported, e.g. 0.1 = 10 %"
    )
    points: int = Field(default=240, ge=20, le=100_000, description="latest points analysed")


class TrendWatch(_Table):
    """Trend-to-threshold prediction (like PromQL's predict_linear) on matching series."""

    metric: str
    tags: dict[str, str] = Field(default_factory=dict)
    threshold: float
    horizon: Duration = Field(default=24 * 3600.0, gt=0, description="report crossings within")
    points: int = Field(default=120, ge=5, le=100_000, description="latest points fitted")
    min_span: Duration = Field(
        default=600.0, gt=0, description="fit only once the points cover this long"
    )
    max_extrapolation: float = Field(
        default=20.0,
        gt=0,
        description="forecast at most this many times the span the points cover",
    )

    @field_validator("threshold")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("threshold must be a finite number, e.g. 0.95")
        return v


class LeakSettings(_Table):
    metrics: list[str] = Field(
        default_factory=lambda: ["process.memory.usage", "python.heap.allocated_blocks"],
        description="memory series checked for steady growth",
    )
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5, description="trend test significance")
    min_points: int = Field(default=30, ge=10)
    min_growth_per_hour: float = Field(
        default=0.02, ge=0.0, description="smallest growth reported, as a share of the level"
    )


class BottleneckSettings(_Table):
    hot_share: float = Field(
        default=0.30, gt=0.0, le=1.0, description="a function at or above this self share is hot"
    )
    min_cpu_samples: float = Field(
        default=10.0,
        ge=0.0,
        description="on-CPU samples per second a process needs before its functions can be "
        "hot (10/s at 100 Hz = 10 % of a core): shares of an idle process are noise",
    )
    share_growth: float = Field(
        default=0.10, gt=0.0, le=1.0, description="self-share growth over the baseline reported"
    )
    tail_ratio_growth: float = Field(
        default=0.5, gt=0.0, description="p99/p50 rising by this share over the baseline"
    )
    cpu_saturated: float = Field(default=0.90, gt=0.0, le=1.0)
    cpu_metric: str = "system.cpu.utilization"
    throughput: list[str] = Field(
        default_factory=lambda: ["http.server.request.duration.rate", "loadtest.requests"],
        description="request-rate series judged 'flat' while the CPU is saturated",
    )
    errors: list[str] = Field(
        default_factory=lambda: ["*.errors", "*.errors.rate", "loadtest.errors"],
        description="error counters or rates watched for bursts",
    )
    burst_factor: float = Field(default=5.0, gt=1.0)
    min_error_rate: float = Field(default=1.0, ge=0.0, description="errors/s below are no burst")
    recent: int = Field(default=5, ge=2, description="latest points compared with the baseline")


ActionsMode = Literal["off", "dry_run", "apply"]


class ActionsSettings(BaseModel):
    """`[processors.<name>.actions]`: the common keys, plus one table per action type
    (`[processors.<name>.actions.sink_batch]`) validated by that action's `Config`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    mode: ActionsMode = Field(
        default="off",
        description="'off'; 'dry_run' records what would change; 'apply' changes and measures",
    )
    use: list[str] = Field(
        default_factory=lambda: ["collection_interval", "sink_batch"],
        description="action types that run (installed by a plugin's revopipe_optimizer_actions)",
    )
    measure_for: Duration = Field(
        default=60.0, gt=0, description="window measured before and after a change"
    )
    tolerance: float = Field(
        default=0.05, ge=0.0, description="an after-figure worse by more than this is reverted"
    )
    cooldown: Duration = Field(
        default=600.0, ge=0, description="wait between two changes of one action"
    )

    def table(self, action: str) -> dict[str, Any]:
        extra = self.model_extra or {}
        value = extra.get(action, {})
        return dict(value) if isinstance(value, dict) else {}

    @model_validator(mode="after")
    def _check_actions(self, info: ValidationInfo) -> ActionsSettings:
        extra = self.model_extra or {}
        for name, table in extra.items():
            if not isinstance(table, dict):
                raise ValueError(
                    f"actions.{name}: expected a table of that action's settings "
                    f"([processors.<name>.actions.{name}]), got {type(table).__name__}"
                )
        registry = (info.context or {}).get("registry")
        if not isinstance(registry, Registry):
            return self
        for name in {*self.use, *extra}:
            where = f"actions.use entry {name!r}" if name in self.use else f"actions.{name}"
            try:
                cls = registry.action_class(name, where=where)
            except PluginError as exc:
                raise ValueError(str(exc)) from None
            try:
                cls.Config.model_validate(self.table(name))
            except ValidationError as exc:
                raise ValueError(f"actions.{name}: {validation_text(exc)}") from None
        return self


def _default_changepoints() -> list[ChangePointWatch]:
    return [
        ChangePointWatch(metric="*.duration.p95"),
        ChangePointWatch(metric="*.duration.p99"),
        ChangePointWatch(metric="loadtest.latency.p95"),
    ]


def _default_trends() -> list[TrendWatch]:
    return [
        TrendWatch(metric="system.filesystem.utilization", threshold=0.95),
        TrendWatch(metric="system.memory.utilization", threshold=0.95, horizon="6h"),
    ]


class OptimizerConfig(ProcessorConfig):
    evaluate_every: Duration = Field(default=30.0, gt=0, description="how often to analyse")
    history: int = Field(default=720, ge=20, le=100_000, description="points kept per series")
    max_series: int = Field(default=5000, ge=1, description="series held at most")
    database: str = Field(
        default="optimizer.db", description="SQLite file (under data_dir) for recommendations"
    )
    changepoints: list[ChangePointWatch] = Field(default_factory=_default_changepoints)
    pvalue: float = Field(
        default=0.01, gt=0.0, lt=0.5, description="false-positive rate of a change point"
    )
    trends: list[TrendWatch] = Field(default_factory=_default_trends)
    leaks: LeakSettings = Field(default_factory=LeakSettings)
    bottlenecks: BottleneckSettings = Field(default_factory=BottleneckSettings)
    actions: ActionsSettings = Field(default_factory=ActionsSettings)
    keep: list[str] = Field(
        default_factory=list,
        description="more metric names or globs to hold, for actions from other plugins",
    )
    forward: bool = Field(
        default=False, description="also pass the input batches downstream, not only findings"
    )
