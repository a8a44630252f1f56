"""Base models for component configuration. A plugin's config model subclasses one of
these; unknown keys are errors so a typo never silently does nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from revopipe.config.address import format_address, is_loopback, parse_address
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
    batch_max: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="up to this many batches already waiting in the inbox are merged into "
        "one write, so a sink with a per-write cost (a commit, a request) keeps up",
    )


class PipelineSettings(BaseModel):
    """The `[pipeline]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "revopipe"
    data_dir: Path = Path(".revopipe")
    drain_timeout: Duration = 30.0
    restart_backoff: Duration = 0.5
    max_restart_backoff: Duration = 30.0
    # Declared before `api` so that `api`'s validator can see it.
    api_allow_remote: bool = Field(
        default=False,
        description="true to let `api` listen on a non-loopback address (no authentication)",
    )
    api: str | None = Field(
        default=None,
        description="'host:port' of the read-only control API `revopipe top` reads "
        "(e.g. '127.0.0.1:8686'; port 0 picks a free one); off when unset",
    )

    @field_validator("api", mode="before")
    @classmethod
    def _check_api(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(
                f"expected 'host:port' such as '127.0.0.1:8686', got {type(value).__name__}"
            )
        host, port = parse_address(value)
        if not is_loopback(host) and not info.data.get("api_allow_remote", False):
            raise ValueError(
                f"{value!r} is not a loopback address and the API has no authentication; "
                "use '127.0.0.1:<port>', or set api_allow_remote = true to accept "
                "connections from other machines"
            )
        return format_address(host, port)
