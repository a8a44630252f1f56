"""The `prometheus` sink: serves /metrics (Prometheus text or OpenMetrics) for scraping."""

from revopipe.plugins import hookimpl
from revopipe_plugins.prometheus.sink import PrometheusSink


@hookimpl
def revopipe_component_types() -> list[type]:
    return [PrometheusSink]
