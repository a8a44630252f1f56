"""Owns one component's live instance: creates it, restarts it with backoff after a
failure, and keeps its health and error counters honest."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio

from revopipe.components import Component, ComponentContext, ControlError
from revopipe.config.spec import ComponentSpec
from revopipe.events import HealthStatus
from revopipe.runtime.stats import ComponentStats

T = TypeVar("T")

# A component that has run this long without failing is healthy again.
RECOVERY_SECONDS = 30.0


class Supervisor:
    def __init__(
        self,
        spec: ComponentSpec,
        context: ComponentContext,
        backoff: float,
        max_backoff: float,
    ) -> None:
        self.spec = spec
        self.context = context
        self.stats: ComponentStats = context.stats
        self.log: logging.Logger = context.logger
        self.initial_backoff = backoff
        self.max_backoff = max_backoff
        self._backoff = backoff
        self._last_failure = 0.0
        self.instance: Component[Any] | None = None
        # Held around every call into the instance and around control requests, so a
        # control action never sees the instance in the middle of a batch. fast_acquire:
        # uncontended (the usual case), taking it costs no trip through the event loop.
        self._busy = anyio.Lock(fast_acquire=True)

    async def ensure_started(self) -> Component[Any]:
        """The live instance, creating (and restarting after failures) as needed."""
        while self.instance is None:
            candidate = self.spec.cls(self.spec.config, self.context)
            try:
                await candidate.start()
            except Exception as exc:
                self.failed(exc, "start")
                await self._stop_quietly(candidate)
                await self.wait_backoff()
                continue
            self.instance = candidate
        return self.instance

    def failed(self, exc: BaseException, during: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self._last_failure = time.monotonic()
        self.stats.set_health(HealthStatus.UNHEALTHY, f"{during} raised {self.stats.last_error}")
        self.log.error(
            "%s %r failed during %s: %s",
            self.spec.kind,
            self.spec.name,
            during,
            self.stats.last_error,
            exc_info=exc,
        )

    def succeeded(self) -> None:
        if self.stats.health is HealthStatus.HEALTHY:
            return
        if time.monotonic() - self._last_failure >= RECOVERY_SECONDS:
            self.stats.set_health(HealthStatus.HEALTHY)
            self._backoff = self.initial_backoff
        elif self.stats.health is HealthStatus.UNHEALTHY:
            self.stats.set_health(
                HealthStatus.DEGRADED, f"recovered; last error: {self.stats.last_error}"
            )

    async def restart(self) -> None:
        """Drop the current instance (after a failure); the next call makes a new one."""
        old, self.instance = self.instance, None
        if old is not None:
            await self._stop_quietly(old)
        self.stats.restarts += 1
        await self.wait_backoff()

    async def wait_backoff(self) -> None:
        await anyio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, self.max_backoff)

    async def call(self, fn: Callable[[Component[Any]], Awaitable[T]], during: str) -> T:
        """Run `fn` on the instance, timing it; failures propagate to the caller."""
        instance = await self.ensure_started()
        async with self._busy:
            t0 = time.perf_counter()
            try:
                return await fn(instance)
            finally:
                self.stats.record_latency(time.perf_counter() - t0)

    async def control(self, action: str, params: Mapping[str, Any], wait: float) -> Any:
        """Run `instance.control(action, params)` between two calls; ControlError 409 when
        there is no live instance, 503 when a call has held the instance for `wait`
        seconds (a slow write: the request may be retried)."""
        acquired = False
        with anyio.move_on_after(wait):
            await self._busy.acquire()
            acquired = True
        if not acquired:
            raise ControlError(
                f"component {self.spec.name!r} has been busy with one batch for {wait:g}s; "
                "retry later",
                status=503,
            )
        try:
            instance = self.instance
            if instance is None:
                raise ControlError(
                    f"component {self.spec.name!r} has no live instance right now (it is "
                    "restarting after a failure, or the pipeline is starting or has stopped); "
                    "retry in a moment",
                    status=409,
                )
            return await instance.control(action, params)
        finally:
            self._busy.release()

    async def close(self) -> None:
        old, self.instance = self.instance, None
        if old is not None:
            await self._stop_quietly(old)

    async def _stop_quietly(self, instance: Component[Any]) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await instance.stop()
            except Exception as exc:
                self.stats.errors += 1
                self.log.warning("%s %r raised in stop(): %r", self.spec.kind, self.spec.name, exc)
