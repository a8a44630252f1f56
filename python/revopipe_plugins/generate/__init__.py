"""The `generate` source: synthetic metrics for demos, tests and engine benchmarks."""

from revopipe.plugins import hookimpl
from revopipe_plugins.generate.source import GenerateSource


@hookimpl
def revopipe_component_types() -> list[type]:
    return [GenerateSource]
