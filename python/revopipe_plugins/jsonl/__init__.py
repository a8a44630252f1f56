"""The `jsonl` sink: an append-only JSON-lines file with size-based rotation."""

from revopipe.plugins import hookimpl
from revopipe_plugins.jsonl.sink import JsonlSink


@hookimpl
def revopipe_component_types() -> list[type]:
    return [JsonlSink]
