"""The `console` sink: events as readable lines or JSON on stdout/stderr."""

from revopipe.plugins import hookimpl
from revopipe_plugins.console.sink import ConsoleSink


@hookimpl
def revopipe_component_types() -> list[type]:
    return [ConsoleSink]
