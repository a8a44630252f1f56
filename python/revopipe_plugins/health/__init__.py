"""The `health` processor: monitored services' health from the stream, by declared rules."""

from revopipe.plugins import hookimpl
from revopipe_plugins.health.processor import HealthProcessor


@hookimpl
def revopipe_component_types() -> list[type]:
    return [HealthProcessor]
