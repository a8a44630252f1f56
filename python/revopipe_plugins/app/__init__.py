"""The `app` source: the service's own instruments (`revopipe.metrics`) into the pipeline."""

from revopipe.plugins import hookimpl
from revopipe_plugins.app.source import AppSource


@hookimpl
def revopipe_component_types() -> list[type]:
    return [AppSource]
