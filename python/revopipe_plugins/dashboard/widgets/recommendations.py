"""`recommendations`: the optimizer's current recommendations with their evidence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from revopipe.components import ControlError
from revopipe.events import Recommendation
from revopipe.widgets import Widget, WidgetConfig


def _evidence(ev: Any) -> str:
    if isinstance(ev, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in ev.items())
    return str(ev)


class RecommendationsWidget(Widget[WidgetConfig]):
    type_name = "recommendations"
    title = "Recommendations"
    description = "the optimizer's recommendations with their evidence"
    default_series: ClassVar[tuple[str, ...]] = ()
    default_refresh = 5.0
    polls = True

    async def data(self, params: Mapping[str, str]) -> dict[str, Any]:
        name = self.source.optimizer_component
        control = self.source.control
        items: list[dict[str, Any]]
        if name is not None and control is not None:
            try:
                found = await control(name, "recommendations", {})
            except ControlError as exc:
                if exc.status != 409:
                    raise
                found = []  # the optimizer is starting or restarting
            items = [dict(r) for r in found] if isinstance(found, list) else []
        else:
            items = [
                {
                    "key": e.key,
                    "title": e.title,
                    "action": e.action,
                    "priority": e.priority,
                    "risk": e.risk,
                    "evidence": dict(e.evidence),
                    "last_seen": e.timestamp,
                }
                for e in reversed(self.source.events("recommendation"))
                if isinstance(e, Recommendation)
            ]
        rows = [
            {
                "title": r.get("title", ""),
                "priority": r.get("priority", ""),
                "risk": r.get("risk", ""),
                "action": r.get("action", ""),
                "evidence": _evidence(r.get("evidence", {})),
            }
            for r in items
        ]
        out: dict[str, Any] = {
            "recommendations": items,
            "table": {
                "columns": [
                    {"key": "priority", "label": "Priority"},
                    {"key": "title", "label": "Recommendation"},
                    {"key": "action", "label": "Action"},
                    {"key": "evidence", "label": "Evidence"},
                ],
                "rows": rows,
            },
        }
        if not rows:
            out["empty"] = "no recommendations" + (
                "" if name else " (no optimizer in this pipeline)"
            )
        return out
