"""Appends every event as a JSON object per line."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from revopipe.batch import Batch
from revopipe.components import Sink
from revopipe.config import SinkConfig, Size
from revopipe.encode import batch_jsonl
from revopipe_plugins.jsonl.rotating import RotatingFile


class JsonlConfig(SinkConfig):
    path: Path = Field(description="file to append to; relative paths are under data_dir")
    max_size: Size = Field(default=64 * 2**20, ge=1, description="rotate past this size")
    max_files: int = Field(default=5, ge=0, description="rotated files kept (path.1 … path.N)")
    fsync: bool = Field(default=False, description="fsync on every flush (durable, slower)")


class JsonlSink(Sink[JsonlConfig]):
    type_name = "jsonl"
    Config = JsonlConfig
    description = "appends events to a rotating JSON-lines file"

    async def start(self) -> None:
        path = self.config.path
        if not path.is_absolute():
            path = self.context.data_dir / path
        self._file = RotatingFile(path, self.config.max_size, self.config.max_files)

    async def write(self, batch: Batch) -> None:
        self._file.write(batch_jsonl(batch))
        if batch.acks:
            # Upstream (a message bus) is acknowledged once write() returns, so the rows
            # must have left this process: a kill -9 must not take them with it.
            self._file.flush(self.config.fsync)

    async def flush(self) -> None:
        self._file.flush(self.config.fsync)

    async def stop(self) -> None:
        file = getattr(self, "_file", None)  # absent when start() failed
        if file is not None:
            file.flush(self.config.fsync)
            file.close()
