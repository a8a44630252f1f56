"""The `sqlite` sink's configuration: where the history lives, its rollup tiers and how
long each tier is kept."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from revopipe.config import Duration, SinkConfig, Size, parse_duration
from revopipe.config.units import format_duration

NS = 1_000_000_000
MIN_SIZE = 2**20
DAY = 86_400.0
DEFAULT_ROLLUP_RETENTION = {"1m": 7 * DAY, "1h": 90 * DAY}


def duration_ns(seconds: float) -> int:
    return round(seconds * NS)


def tier_label(window_ns: int) -> str:
    """'1m', '1h', '90s', '500ms': how a tier is named in results and the CLI."""
    for unit, size in (("d", 86_400 * NS), ("h", 3_600 * NS), ("m", 60 * NS), ("s", NS)):
        if window_ns % size == 0:
            return f"{window_ns // size}{unit}"
    return format_duration(window_ns / NS)


class SqliteConfig(SinkConfig):
    path: str = Field(
        default="history.db",
        description="database file, relative to the pipeline's data_dir",
    )
    rollups: list[Duration] = Field(
        default_factory=lambda: [60.0, 3600.0],
        description="rollup windows such as ['1m', '1h'], each a whole multiple of the "
        "previous one",
    )
    raw_retention: Duration = Field(
        default=86_400.0, gt=0, description="how long raw points and histograms are kept"
    )
    rollup_retention: dict[str, Duration] | None = Field(
        default=None,
        validate_default=True,
        description='how long each rollup tier is kept, e.g. { "1m" = "7d", "1h" = "90d" } '
        "(the default)",
    )
    events_retention: Duration = Field(
        default=30 * 86_400.0,
        gt=0,
        description="how long spans, alerts and other events are kept",
    )
    max_size: Size = Field(
        default=2**30,
        description="past this database size the oldest raw data, then the oldest rollups, "
        "are deleted, e.g. '1GiB'",
    )
    retention_interval: Duration = Field(
        default=60.0, gt=0, description="how often retention runs, e.g. '1m'"
    )
    significant_digits: int = Field(
        default=3,
        ge=1,
        le=5,
        description="HdrHistogram precision of histogram rollups (3 = 0.1% error)",
    )

    @field_validator("path")
    @classmethod
    def _inside_data_dir(cls, value: str) -> str:
        p = PurePath(value)
        if not value or p.is_absolute() or ".." in p.parts or p.name in ("", "."):
            raise ValueError(
                f"{value!r} is not a file name inside data_dir; the history belongs to the "
                "pipeline's data_dir: write a relative path such as 'history.db' and set "
                "[pipeline] data_dir to move it"
            )
        return value

    @field_validator("rollups")
    @classmethod
    def _tiers_nest(cls, value: list[float]) -> list[float]:
        windows = [duration_ns(s) for s in value]
        for w, s in zip(windows, value, strict=True):
            if w < NS:
                raise ValueError(
                    f"rollup {format_duration(s)!r} is shorter than 1s; use windows such as "
                    "'1m' or '1h' (raw points keep the full resolution)"
                )
        if windows != sorted(set(windows)):
            raise ValueError("list each rollup window once, shortest first, e.g. ['1m', '1h']")
        for finer, coarser in itertools.pairwise(windows):
            if coarser % finer:
                raise ValueError(
                    f"rollup {tier_label(coarser)!r} is not a whole multiple of "
                    f"{tier_label(finer)!r}; each window must hold whole windows of the "
                    "previous one (e.g. '1m', '1h')"
                )
        return value

    @field_validator("rollup_retention", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for key in value:
            try:
                parse_duration(key)
            except ValueError:
                raise ValueError(
                    f"key {key!r} is not a rollup window; write the rollup as in `rollups`, "
                    'e.g. { "1m" = "7d" }'
                ) from None
        return value

    @field_validator("max_size")
    @classmethod
    def _sane_size(cls, value: int) -> int:
        if value < MIN_SIZE:
            raise ValueError(f"{value} bytes is too small for a history; use at least '1MiB'")
        return value

    @field_validator("rollup_retention")
    @classmethod
    def _one_per_tier(
        cls, value: dict[str, float] | None, info: ValidationInfo
    ) -> dict[str, float] | None:
        rollups = info.data.get("rollups")
        if rollups is None:
            return value  # `rollups` is invalid, and reported
        windows = {duration_ns(s) for s in rollups}
        table = value if value is not None else DEFAULT_ROLLUP_RETENTION
        kept: dict[str, float] = {}
        for key, keep in table.items():
            w = duration_ns(parse_duration(key))
            if w not in windows:
                if value is None:
                    continue  # a default entry for a tier the user did not ask for
                listed = ", ".join(repr(tier_label(x)) for x in sorted(windows)) or "none"
                raise ValueError(
                    f"{key!r} is not one of the rollups ({listed}); remove it or add it to "
                    "`rollups`"
                )
            if any(duration_ns(parse_duration(k)) == w for k in kept):
                raise ValueError(f"{key!r} is given twice (in two spellings); keep one")
            if duration_ns(keep) < w:
                raise ValueError(
                    f"{key!r} = {format_duration(keep)!r} keeps less than one {key!r} window; "
                    f"keep it at least {tier_label(w)!r}"
                )
            kept[key] = keep
        missing = sorted(windows - {duration_ns(parse_duration(k)) for k in kept})
        if missing:
            example = ", ".join(f'"{tier_label(w)}" = "30d"' for w in missing)
            raise ValueError(
                f"no retention for rollup {', '.join(repr(tier_label(w)) for w in missing)}; "
                f"add it, e.g. rollup_retention = {{ {example} }}"
            )
        return kept

    def tiers(self) -> list[Tier]:
        """The rollup tiers, finest first."""
        keep = {
            duration_ns(parse_duration(k)): duration_ns(v)
            for k, v in (self.rollup_retention or {}).items()
        }
        return [Tier(duration_ns(s), keep[duration_ns(s)]) for s in self.rollups]


@dataclass(frozen=True, slots=True)
class Tier:
    """A rollup tier: windows of `window_ns`, kept `retention_ns`."""

    window_ns: int
    retention_ns: int

    @property
    def label(self) -> str:
        return tier_label(self.window_ns)
