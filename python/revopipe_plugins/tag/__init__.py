"""The `tag` processor: add, remove and rename tags."""

from revopipe.plugins import hookimpl
from revopipe_plugins.tag.processor import TagProcessor


@hookimpl
def revopipe_component_types() -> list[type]:
    return [TagProcessor]
