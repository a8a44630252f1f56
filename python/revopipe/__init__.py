"""revopipe: a monitoring pipeline for Python teams with a Rust core.

Embedding::

    import revopipe

    pipeline = revopipe.Pipeline.from_toml(text)
    async with pipeline.running():      # inside an anyio/asyncio program
        ...

    handle = revopipe.embed(text)       # or in a background thread
    handle.stop()
"""

# so that `revopipe.trace.span(...)` works after a bare `import revopipe`
from revopipe import metrics, trace
from revopipe.batch import Batch, MetricBatch, MetricBatchBuilder
from revopipe.components import (
    Component,
    ComponentContext,
    ControlError,
    Emit,
    Processor,
    Sink,
    Source,
)
from revopipe.config import (
    ConfigError,
    ConfigInvalid,
    Duration,
    ProcessorConfig,
    SinkConfig,
    Size,
    SourceConfig,
)
from revopipe.embed import PipelineHandle, embed
from revopipe.events import (
    Alert,
    Event,
    Health,
    HealthStatus,
    LoadTestSample,
    Metric,
    MetricKind,
    Profile,
    Recommendation,
    Span,
)
from revopipe.notify import Channel, ChannelConfig, Delivery, Notification
from revopipe.plugins import hookimpl
from revopipe.profiled import profiled
from revopipe.runtime.pipeline import Pipeline

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "Batch",
    "Channel",
    "ChannelConfig",
    "Component",
    "ComponentContext",
    "ConfigError",
    "ConfigInvalid",
    "ControlError",
    "Delivery",
    "Duration",
    "Emit",
    "Event",
    "Health",
    "HealthStatus",
    "LoadTestSample",
    "Metric",
    "MetricBatch",
    "MetricBatchBuilder",
    "MetricKind",
    "Notification",
    "Pipeline",
    "PipelineHandle",
    "Processor",
    "ProcessorConfig",
    "Profile",
    "Recommendation",
    "Sink",
    "SinkConfig",
    "Size",
    "Source",
    "SourceConfig",
    "Span",
    "embed",
    "hookimpl",
    "metrics",
    "profiled",
    "trace",
]
