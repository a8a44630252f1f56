"""A validated pipeline: what the runtime builds from."""

from __future__ import annotations

from dataclasses import dataclass, field

from revopipe.components import ComponentClass, Kind
from revopipe.config.redact import Redactor
from revopipe.config.schema import ComponentConfig, PipelineSettings


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    name: str
    kind: Kind
    cls: ComponentClass
    config: ComponentConfig
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    settings: PipelineSettings
    components: dict[str, ComponentSpec]
    order: tuple[str, ...]
    """Topological order: every component after all of its inputs."""
    redactor: Redactor = field(default_factory=Redactor)

    def outputs_of(self, name: str) -> list[str]:
        return [c.name for c in self.components.values() if name in c.inputs]
