"""Selects metrics by name and tags. Decisions are cached per distinct name and per
distinct tag set: a pipeline carries few of each, so the per-row cost is a dict lookup."""

from __future__ import annotations

import fnmatch
import re

from pydantic import Field

from revopipe.batch import Batch
from revopipe.components import Processor
from revopipe.config import ProcessorConfig
from revopipe.events import Tags


def _globs(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class FilterConfig(ProcessorConfig):
    include: list[str] = Field(
        default_factory=list, description="name globs to keep (empty keeps every name)"
    )
    exclude: list[str] = Field(default_factory=list, description="name globs to drop")
    tags: dict[str, str] = Field(
        default_factory=dict, description="tag globs that must all match, e.g. {device = 'sd*'}"
    )
    drop_events: bool = Field(
        default=False, description="also drop non-metric events (spans, alerts, …)"
    )


class FilterProcessor(Processor[FilterConfig]):
    type_name = "filter"
    Config = FilterConfig
    description = "keeps or drops metrics by name glob and tag values"

    async def start(self) -> None:
        self._include = _globs(self.config.include)
        self._exclude = _globs(self.config.exclude)
        self._tag_globs = {k: _globs([v]) for k, v in self.config.tags.items()}
        self._names: dict[str, bool] = {}
        self._tags: dict[Tags, bool] = {}

    def _name_ok(self, name: str) -> bool:
        ok = self._names.get(name)
        if ok is None:
            ok = (self._include is None or bool(self._include.match(name))) and not (
                self._exclude is not None and self._exclude.match(name)
            )
            if len(self._names) < 100_000:
                self._names[name] = ok
        return ok

    def _tags_ok(self, tags: Tags) -> bool:
        ok = self._tags.get(tags)
        if ok is None:
            d = dict(tags)
            ok = all(
                k in d and pattern is not None and bool(pattern.match(d[k]))
                for k, pattern in self._tag_globs.items()
            )
            if len(self._tags) < 100_000:
                self._tags[tags] = ok
        return ok

    async def process(self, batch: Batch) -> Batch | None:
        m = batch.metrics
        if self._tag_globs:
            keep = [
                self._name_ok(n) and self._tags_ok(t) for n, t in zip(m.names, m.tags, strict=True)
            ]
        else:
            keep = [self._name_ok(n) for n in m.names]
        out = batch.replace(
            metrics=m.select(keep), events=() if self.config.drop_events else batch.events
        )
        return out if len(out) else None
