"""The `blackhole` sink: accepts and discards, counting what it saw."""

from revopipe.plugins import hookimpl
from revopipe_plugins.blackhole.sink import BlackholeSink


@hookimpl
def revopipe_component_types() -> list[type]:
    return [BlackholeSink]
