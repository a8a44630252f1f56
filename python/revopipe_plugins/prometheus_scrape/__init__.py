"""The `prometheus_scrape` source: scrapes Prometheus exposition endpoints on an interval."""

from revopipe.plugins import hookimpl
from revopipe_plugins.prometheus_scrape.source import PrometheusScrapeSource


@hookimpl
def revopipe_component_types() -> list[type]:
    return [PrometheusScrapeSource]
