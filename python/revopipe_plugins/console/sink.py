"""Writes batches to the terminal."""

from __future__ import annotations

import contextlib
import sys
from typing import BinaryIO, Literal

from pydantic import Field

from revopipe.batch import Batch
from revopipe.components import Sink
from revopipe.config import SinkConfig
from revopipe.encode import batch_jsonl
from revopipe_plugins.console.format import text_lines


class ConsoleConfig(SinkConfig):
    format: Literal["text", "json"] = Field(
        default="text", description="'text' (name{tags} value unit) or 'json' (JSON lines)"
    )
    stream: Literal["stdout", "stderr"] = Field(default="stdout", description="where to write")


class ConsoleSink(Sink[ConsoleConfig]):
    type_name = "console"
    Config = ConsoleConfig
    description = "prints events to stdout or stderr, as text or JSON lines"

    async def start(self) -> None:
        stream = sys.stdout if self.config.stream == "stdout" else sys.stderr
        self._out: BinaryIO = stream.buffer

    async def write(self, batch: Batch) -> None:
        if self.config.format == "json":
            data = batch_jsonl(batch)
        else:
            data = ("\n".join(text_lines(batch)) + "\n").encode()
        try:
            self._out.write(data)
            self._out.flush()
        except BrokenPipeError:
            # `revopipe run ... | head` closed the pipe: nobody reads any more, which is
            # not a failure worth retrying.
            pass

    async def flush(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self._out.flush()
