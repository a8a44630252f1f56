"""revopipe-scale: the `scale` processor, written as docs/plugins.md describes."""

import revopipe
from revopipe_scale.processor import ScaleProcessor


@revopipe.hookimpl
def revopipe_component_types() -> list[type]:
    return [ScaleProcessor]
