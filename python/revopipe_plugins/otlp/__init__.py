"""The `otlp` sink: metrics and spans out over OTLP/HTTP protobuf."""

from revopipe.plugins import hookimpl
from revopipe_plugins.otlp.sink import OtlpSink


@hookimpl
def revopipe_component_types() -> list[type]:
    return [OtlpSink]
