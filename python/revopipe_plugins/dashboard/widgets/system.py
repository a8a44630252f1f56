"""`system`: CPU, memory and disk use with sparklines, from the `system` source."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from revopipe.widgets import SeriesView, Widget, WidgetConfig
from revopipe_plugins.dashboard.widgets.base import clean, first_of, spark, status_of, with_suffixes

CPU = "system.cpu.utilization"
MEMORY = "system.memory.utilization"
DISK = "system.filesystem.utilization"


def _mountpoint(s: SeriesView) -> str:
    tags = s.tag_dict
    return tags.get("system.filesystem.mountpoint") or tags.get("mountpoint", "")


class SystemWidget(Widget[WidgetConfig]):
    type_name = "system"
    title = "System"
    description = "CPU, memory and disk use with sparklines"
    default_series: ClassVar[tuple[str, ...]] = tuple(with_suffixes([CPU, MEMORY, DISK]))

    def _names(self, base: str) -> list[str]:
        chosen = [p for p in self.config.series if p.startswith(base)]
        return chosen or with_suffixes([base])

    async def data(self, params: Mapping[str, str]) -> dict[str, Any]:
        src = self.source
        tags = self.config.tags or None
        cpu_all = first_of(src, self._names(CPU), tags)
        # The source reports the total without tags, and also per CPU (`cpu`) and per
        # mode (`cpu.mode`): only the untagged series is the total.
        cpu = next((s for s in cpu_all if not (s.tag_dict.keys() - set(self.config.tags))), None)
        mem_all = first_of(src, self._names(MEMORY), tags)
        mem = next(
            (s for s in mem_all if s.tag_dict.get("system.memory.state") == "used"),
            mem_all[0] if len(mem_all) == 1 else None,
        )
        disks = first_of(src, self._names(DISK), tags)
        cards = [self._card("CPU", cpu), self._card("Memory", mem)]
        for d in sorted(disks, key=_mountpoint)[:6]:
            cards.append(self._card(f"Disk {_mountpoint(d)}".strip(), d))
        values = {c["label"]: c["value"] for c in cards}
        if not (cpu or mem or disks):
            return {
                "cards": cards,
                "values": values,
                "empty": "no system metrics yet: add a `system` source to this dashboard's inputs",
            }
        return {"cards": cards, "values": values}

    @staticmethod
    def _card(label: str, s: SeriesView | None) -> dict[str, Any]:
        value = clean(s.last * 100, 1) if s is not None and s.last is not None else None
        return {
            "label": label,
            "value": value,
            "unit": "%",
            "status": status_of(None if value is None else value / 100),
            "spark": spark(s, scale=100),
        }
