"""The `aggregate` processor: per-series windows with exact counts and HDR percentiles."""

from revopipe.plugins import hookimpl
from revopipe_plugins.aggregate.processor import AggregateProcessor


@hookimpl
def revopipe_component_types() -> list[type]:
    return [AggregateProcessor]
