"""The seven built-in dashboard widgets."""

from revopipe_plugins.dashboard.widgets.alerts import AlertsWidget
from revopipe_plugins.dashboard.widgets.api import ApiWidget
from revopipe_plugins.dashboard.widgets.errors import ErrorsWidget
from revopipe_plugins.dashboard.widgets.health import HealthWidget
from revopipe_plugins.dashboard.widgets.recommendations import RecommendationsWidget
from revopipe_plugins.dashboard.widgets.system import SystemWidget
from revopipe_plugins.dashboard.widgets.trends import TrendsWidget

BUILTIN = (
    SystemWidget,
    ApiWidget,
    ErrorsWidget,
    HealthWidget,
    AlertsWidget,
    TrendsWidget,
    RecommendationsWidget,
)

__all__ = [
    "BUILTIN",
    "AlertsWidget",
    "ApiWidget",
    "ErrorsWidget",
    "HealthWidget",
    "RecommendationsWidget",
    "SystemWidget",
    "TrendsWidget",
]
