"""Rewrites tag sets. A stream has few distinct tag sets, so each rewrite is computed
once and cached: the per-row cost is one dict lookup."""

from __future__ import annotations

from pydantic import Field

from revopipe.batch import Batch
from revopipe.components import Processor
from revopipe.config import ProcessorConfig
from revopipe.events import Tags


class TagConfig(ProcessorConfig):
    add: dict[str, str] = Field(default_factory=dict, description="tags to set (overwrites)")
    remove: list[str] = Field(default_factory=list, description="tag keys to delete")
    rename: dict[str, str] = Field(default_factory=dict, description="old key -> new key")
    overwrite: bool = Field(default=True, description="whether `add` replaces existing values")


class TagProcessor(Processor[TagConfig]):
    type_name = "tag"
    Config = TagConfig
    description = "adds, removes and renames metric tags"

    async def start(self) -> None:
        self._cache: dict[Tags, Tags] = {}

    def _rewrite(self, tags: Tags) -> Tags:
        out = self._cache.get(tags)
        if out is not None:
            return out
        cfg = self.config
        d = {cfg.rename.get(k, k): v for k, v in tags if k not in cfg.remove}
        for k, v in cfg.add.items():
            if cfg.overwrite or k not in d:
                d[k] = v
        out = tuple(sorted(d.items()))
        if len(self._cache) < 100_000:
            self._cache[tags] = out
        return out

    async def process(self, batch: Batch) -> Batch:
        m = batch.metrics
        return batch.replace(metrics=m.with_tags([self._rewrite(t) for t in m.tags]))
