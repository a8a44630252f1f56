"""Base models for component configuration. A plugin's config model subclasses one of
these; unknown keys are errors so a typo never silently does nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from revopipe.config.units import Duration

WhenFull = Literal["block", "drop_newest"]


class ComponentConfig(BaseModel):
    """Keys every component has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="the component type, as listed by `revopipe plugins`")


class SourceConfig(ComponentConfig):
    """A source has no inputs."""


class ConsumerConfig(ComponentConfig):
    """A component that reads from others: its input edges and their buffer policy."""

    inputs: list[str] = Field(min_length=1, description="names of upstream components")
    buffer: int = Field(
        default=16, ge=1, le=1_000_000, description="batches queued on each input edge"
    )
    when_full: WhenFull = Field(
        default="block",
        description="'block' slows the producer (backpressure); 'drop_newest' drops and counts",
    )


class ProcessorConfig(ConsumerConfig):
    """Processors transform batches."""


class SinkConfig(ConsumerConfig):
    """Sinks write batches out; a failing write is retried, then dead-lettered."""

    max_retries: int = Field(default=5, ge=0, description="retries of a failing write")


class PipelineSettings(BaseModel):
    """The `[pipeline]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "revopipe"
    data_dir: Path = Path(".revopipe")
    drain_timeout: Duration = 30.0
    restart_backoff: Duration = 0.5
    max_restart_backoff: Duration = 30.0
