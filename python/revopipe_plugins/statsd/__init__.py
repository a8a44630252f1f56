"""The `statsd` source: StatsD and DogStatsD metrics over UDP, parsed in Rust."""

from revopipe.plugins import hookimpl
from revopipe_plugins.statsd.source import StatsdSource


@hookimpl
def revopipe_component_types() -> list[type]:
    return [StatsdSource]
