"""Pipeline configuration: schemas and value types for component configs.

Loading and validating a whole file lives in `revopipe.config.load` (it needs the plugin
registry, which in turn needs these schemas)."""

from revopipe.config.errors import ConfigError, ConfigInvalid
from revopipe.config.schema import (
    ComponentConfig,
    PipelineSettings,
    ProcessorConfig,
    SinkConfig,
    SourceConfig,
)
from revopipe.config.units import Duration, Size, parse_duration, parse_size

__all__ = [
    "ComponentConfig",
    "ConfigError",
    "ConfigInvalid",
    "Duration",
    "PipelineSettings",
    "ProcessorConfig",
    "SinkConfig",
    "Size",
    "SourceConfig",
    "parse_duration",
    "parse_size",
]
