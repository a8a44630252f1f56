"""The `system` source: host CPU, load, memory, paging, filesystem, disk and network
metrics, per-process metrics for chosen processes, and container (cgroup) limits, named
after the OpenTelemetry semantic conventions."""

from revopipe.plugins import hookimpl
from revopipe_plugins.system.source import SystemConfig, SystemSource

__all__ = ["SystemConfig", "SystemSource", "revopipe_component_types"]


@hookimpl
def revopipe_component_types() -> list[type]:
    return [SystemSource]
