"""The `filter` processor: keep or drop metrics by name glob and tag values."""

from revopipe.plugins import hookimpl
from revopipe_plugins.filter.processor import FilterProcessor


@hookimpl
def revopipe_component_types() -> list[type]:
    return [FilterProcessor]
