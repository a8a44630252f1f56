"""The `internal` source: revopipe's own per-component counters and health, as metrics."""

from revopipe.plugins import hookimpl
from revopipe_plugins.internal.source import InternalSource


@hookimpl
def revopipe_component_types() -> list[type]:
    return [InternalSource]
