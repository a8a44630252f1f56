"""`import revopipe` runs the same pipeline inside a program: in its event loop, or on a
background thread, with a clean stop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import anyio
import pytest

import revopipe
from tests.conftest import read_jsonl


def toml(tmp_path: Path, count: int = 0) -> str:
    return f"""
[pipeline]
data_dir = "{tmp_path}"
[sources.gen]
type = "generate"
batch_size = 10
interval = "10ms"
count = {count}
[sinks.file]
type = "jsonl"
inputs = ["gen"]
path = "out.jsonl"
"""


def test_in_an_asyncio_program(tmp_path: Path) -> None:
    async def service() -> int:
        pipeline = revopipe.Pipeline.from_toml(toml(tmp_path))
        async with pipeline.running():
            await asyncio.sleep(0.3)  # the host program's own work
        return {s.name: s for s in pipeline.component_stats()}["gen"].events_out

    emitted = asyncio.run(service())
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert emitted > 0 and [r["value"] for r in rows] == [float(i) for i in range(emitted)]


@pytest.mark.anyio
async def test_from_dict_in_anyio(tmp_path: Path) -> None:
    pipeline = revopipe.Pipeline.from_dict(
        {
            "pipeline": {"data_dir": str(tmp_path)},
            "sources": {"gen": {"type": "generate", "count": 25, "interval": "0s"}},
            "sinks": {"file": {"type": "jsonl", "inputs": ["gen"], "path": "out.jsonl"}},
        }
    )
    with anyio.fail_after(10):
        await pipeline.run()  # finite source: returns once drained
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 25


def test_background_thread_with_clean_stop(tmp_path: Path) -> None:
    before = threading.active_count()
    handle = revopipe.embed(toml(tmp_path))
    assert handle.running
    time.sleep(0.3)
    handle.stop(timeout=10)
    assert not handle.running
    emitted = {s.name: s for s in handle.pipeline.component_stats()}["gen"].events_out
    assert len(read_jsonl(tmp_path / "out.jsonl")) == emitted > 0
    assert threading.active_count() == before


def test_embed_as_context_manager_and_finite_join(tmp_path: Path) -> None:
    with revopipe.embed(toml(tmp_path, count=30)) as handle:
        handle.join(timeout=10)
        assert not handle.running
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 30


def test_invalid_config_raises_with_every_error() -> None:
    with pytest.raises(revopipe.ConfigInvalid) as info:
        revopipe.embed(
            {
                "sources": {"g": {"type": "generate", "interval": "x"}},
                "sinks": {"o": {"type": "nope", "inputs": ["g"]}},
            }
        )
    assert len(info.value.errors) == 2


def test_unwritable_data_dir_fails_the_start_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(NotADirectoryError):
        revopipe.embed(toml(blocker / "sub"))
