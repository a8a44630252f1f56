"""The `nats` source and sink: batches between revopipe processes over NATS JetStream,
at least once end to end, deduplicated by message id, with optional leader election."""

from revopipe.plugins import hookimpl
from revopipe_plugins.nats.sink import NatsSink
from revopipe_plugins.nats.source import NatsSource


@hookimpl
def revopipe_component_types() -> list[type]:
    return [NatsSource, NatsSink]
