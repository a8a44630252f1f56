"""The `memory` source: process RSS and virtual memory, the Python heap, and opt-in
tracemalloc allocation-site growth."""

from revopipe.plugins import hookimpl
from revopipe_plugins.memory.source import MemorySource


@hookimpl
def revopipe_component_types() -> list[type]:
    return [MemorySource]
