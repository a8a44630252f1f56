"""The `dashboard` sink: a live web dashboard and JSON API, with seven built-in widgets
and the `revopipe_dashboard_widgets` hook for more."""

from revopipe.plugins import hookimpl
from revopipe_plugins.dashboard.sink import DashboardSink
from revopipe_plugins.dashboard.widgets import BUILTIN


@hookimpl
def revopipe_component_types() -> list[type]:
    return [DashboardSink]


@hookimpl
def revopipe_dashboard_widgets() -> list[type]:
    return list(BUILTIN)
