"""Running a pipeline inside an existing program, on a background thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from revopipe.runtime.pipeline import Pipeline, first_error


class PipelineHandle:
    """A pipeline running on its own thread and event loop. `stop()` drains it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._thread = threading.Thread(
            target=self._main, name=f"revopipe-{pipeline.spec.settings.name}", daemon=True
        )
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> PipelineHandle:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"pipeline did not start within {timeout}s")
        if self.error is not None:
            raise self.error
        return self

    def _main(self) -> None:
        try:
            anyio.run(self._run)
        except BaseException as exc:  # surfaced through .error / stop()
            self.error = first_error(exc)
        finally:
            self._ready.set()

    async def _run(self) -> None:
        self._token = anyio.lowlevel.current_token()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.pipeline.run)
            await self.pipeline.wait_started()
            self._ready.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def api_url(self) -> str | None:
        """Base URL of the control API (`[pipeline] api`), None when it is off."""
        return self.pipeline.api_url

    def stop(self, timeout: float | None = 60.0, *, force: bool = False) -> None:
        """Drain and wait for the thread; re-raises an error the pipeline ended with."""
        if self._thread.is_alive() and self._token is not None:
            # RuntimeError: the loop finished between the check and the call.
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(
                    lambda: self.pipeline.stop(force=force), token=self._token
                )
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"pipeline did not drain within {timeout}s")
        if self.error is not None:
            raise self.error

    def join(self, timeout: float | None = None) -> None:
        """Wait for a pipeline whose sources are finite to end by itself."""
        self._thread.join(timeout)

    def __enter__(self) -> PipelineHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def embed(
    config: str | Path | Mapping[str, Any] | Pipeline,
    *,
    extras: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> PipelineHandle:
    """Start a pipeline on a background thread and return its handle.

    `config` is TOML text, a path to a TOML file, a config dict, or a built `Pipeline`.
    """
    if isinstance(config, Pipeline):
        pipeline = config
    elif isinstance(config, Path):
        pipeline = Pipeline.from_file(config, env=env, extras=extras)
    elif isinstance(config, str):
        pipeline = Pipeline.from_toml(config, env=env, extras=extras)
    else:
        pipeline = Pipeline.from_dict(config, extras=extras)
    return PipelineHandle(pipeline).start()
