"""`health`: every pipeline component and every monitored service, with its reason, and
the overall status by the rule of `revopipe.health`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from revopipe.health import overall
from revopipe.widgets import Widget, WidgetConfig


class HealthWidget(Widget[WidgetConfig]):
    type_name = "health"
    title = "Health"
    description = "pipeline components and monitored services, with the reason"
    default_series: ClassVar[tuple[str, ...]] = ()
    polls = True

    async def data(self, params: Mapping[str, str]) -> dict[str, Any]:
        stats = {s.name: s for s in self.source.pipeline_stats()}
        entries = self.source.health_entries()
        o = overall(entries)
        rows = []
        for e in entries:
            s = stats.get(e.name) if e.kind == "component" else None
            rows.append(
                {
                    "subject": e.subject,
                    "name": e.name,
                    "kind": e.kind if s is None else f"{s.kind} ({s.type})",
                    "status": str(e.status),
                    "reason": e.reason,
                }
            )
        return {
            "status": str(o.status),
            "reason": o.reason,
            "subjects": rows,
            "cards": [{"label": "Overall", "text": str(o.status), "status": str(o.status)}],
            "table": {
                "columns": [
                    {"key": "name", "label": "Subject"},
                    {"key": "kind", "label": "Kind"},
                    {"key": "status", "label": "Status"},
                    {"key": "reason", "label": "Reason"},
                ],
                "rows": rows,
            },
        }
