"""The `http` source: OTLP/HTTP metrics and traces, and JSON lines, over HTTP."""

from revopipe.plugins import hookimpl
from revopipe_plugins.http.source import HttpSource


@hookimpl
def revopipe_component_types() -> list[type]:
    return [HttpSource]
