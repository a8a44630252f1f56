"""The running pipeline: builds the DAG from a `PipelineSpec`, runs every component in
its own supervised task, and drains on stop."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from revopipe.acks import Ack, release_all, retain_all
from revopipe.batch import Batch, MetricBatch
from revopipe.components import Component, ComponentContext, ControlError, Processor, Sink, Source
from revopipe.config.load import load_dict, load_file, load_text
from revopipe.config.schema import ComponentConfig, ConsumerConfig, SinkConfig
from revopipe.config.spec import ComponentSpec, PipelineSpec
from revopipe.health import PipelineHealth, pipeline_health
from revopipe.plugins import Registry, default_registry
from revopipe.runtime.deadletter import DeadLetter
from revopipe.runtime.edges import Inbox, Outputs
from revopipe.runtime.stats import ComponentStats
from revopipe.runtime.supervisor import Supervisor
from revopipe.tuning import Knob, TuningError, check_changes

if TYPE_CHECKING:
    from revopipe.runtime.api import ApiServer

log = logging.getLogger("revopipe.runtime")


class Pipeline:
    """A pipeline built from a validated spec. Run it with `await pipeline.run()` (returns
    after a drain), or `async with pipeline.running():` inside an existing program."""

    def __init__(
        self,
        spec: PipelineSpec,
        registry: Registry | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.registry = registry or default_registry()
        self.extras = dict(extras or {})
        self.stats: dict[str, ComponentStats] = {
            name: ComponentStats(name, c.kind, c.config.type) for name, c in spec.components.items()
        }
        self._stop_requested: anyio.Event | None = None
        self._force: anyio.CancelScope | None = None
        self._started: anyio.Event | None = None
        self._inboxes: dict[str, Inbox] = {}
        self._supervisors: dict[str, Supervisor] = {}
        self._started_at: float | None = None
        self.running_now = False
        self.api: ApiServer | None = None
        """The control API while it is up (`[pipeline] api`)."""

    # -- construction helpers ---------------------------------------------------------

    @classmethod
    def from_toml(
        cls,
        text: str,
        *,
        registry: Registry | None = None,
        env: Mapping[str, str] | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> Pipeline:
        """Validate TOML text (raising `ConfigInvalid` with every error) and build."""
        registry = registry or default_registry()
        return cls(load_text(text, registry, env), registry, extras)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        registry: Registry | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> Pipeline:
        registry = registry or default_registry()
        return cls(load_dict(data, registry), registry, extras)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        registry: Registry | None = None,
        env: Mapping[str, str] | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> Pipeline:
        registry = registry or default_registry()
        return cls(load_file(path, registry, env), registry, extras)

    # -- control ----------------------------------------------------------------------

    def stop(self, *, force: bool = False) -> None:
        """Request a drain (sources stop, in-flight batches flow through, sinks flush).
        `force=True` cancels everything at once. Call from the pipeline's event loop; from
        another thread use the handle returned by `revopipe.embed`."""
        if self._stop_requested is not None:
            self._stop_requested.set()
        if force and self._force is not None:
            self._force.cancel()

    def snapshot(self) -> list[dict[str, Any]]:
        return [s.snapshot() for s in self.stats.values()]

    def component_stats(self) -> Sequence[ComponentStats]:
        return list(self.stats.values())

    def queue_depth(self, name: str) -> tuple[int, int] | None:
        """(batches waiting, capacity) in a processor's or sink's inbox while it runs."""
        inbox = self._inboxes.get(name)
        if inbox is None:
            return None
        s = inbox.receive.statistics()
        return s.current_buffer_used, int(s.max_buffer_size)

    def component(self, name: str) -> Component[Any] | None:
        """The live instance of component `name`, or None while there is none (not
        started yet, restarting after a failure, stopped) or no such component."""
        sup = self._supervisors.get(name)
        return sup.instance if sup is not None else None

    async def control(
        self, name: str, action: str, params: Mapping[str, Any], *, wait: float = 10.0
    ) -> Any:
        """`Component.control` on the live instance of `name`, between two batches. Raises
        `ControlError`: 404 for an unknown component or an action it does not declare in
        `control_actions`, 409 without a live instance, 503 when busy for `wait` seconds;
        and whatever the component raises. Call on the pipeline's event loop."""
        spec = self.spec.components.get(name)
        if spec is None:
            raise ControlError(
                f"no component named {name!r}; components: {', '.join(self.spec.order)}",
                status=404,
            )
        actions = spec.cls.control_actions
        if action not in actions:
            known = ", ".join(sorted(actions)) or "none"
            raise ControlError(
                f"component {name!r} ({spec.config.type}) has no control action {action!r}; "
                f"its actions: {known}",
                status=404,
            )
        sup = self._supervisors.get(name)
        if sup is None:
            raise ControlError(
                f"component {name!r} is not running (the pipeline has not started it); "
                "retry once the pipeline runs",
                status=409,
            )
        return await sup.control(action, params, wait)

    def knobs(self) -> list[Knob]:
        """Every component's tunable config keys with their current values."""
        out = []
        for name, spec in self.spec.components.items():
            for key, t in spec.cls.tunables.items():
                value = getattr(spec.config, key, None)
                if isinstance(value, int | float):
                    out.append(
                        Knob(name, spec.kind, spec.config.type, key, value, t.minimum, t.maximum)
                    )
        return out

    def retune(self, component: str, changes: Mapping[str, float]) -> dict[str, float]:
        """Change tunable config keys of `component` while it runs (see `revopipe.tuning`);
        returns the previous values. The live instance and any later restart see the new
        config. Raises `TuningError`, changing nothing, for a bad request."""
        spec = self.spec.components.get(component)
        if spec is None:
            raise TuningError(
                f"no component named {component!r}; components: {', '.join(self.spec.order)}"
            )
        checked = check_changes(component, spec.cls.tunables, changes)
        old: dict[str, float] = {}
        typed: dict[str, float | int] = {}
        for key, value in checked.items():
            current = getattr(spec.config, key)
            old[key] = current
            # an int key (a count) stays an int, so the component's arithmetic is unchanged
            typed[key] = round(value) if isinstance(current, int) else value
        new_spec = replace(spec, config=spec.config.model_copy(update=typed))
        self.spec.components[component] = new_spec
        sup = self._supervisors.get(component)
        if sup is not None:
            sup.spec = new_spec
            if sup.instance is not None:
                sup.instance.config = new_spec.config
        log.info("component %r retuned: %s (was %s)", component, typed, old)
        return old

    def health(self) -> PipelineHealth:
        """Every component's and monitored service's health and the overall status, by
        the rule in `revopipe.health`; what `/api/v1/health` and `/readyz` serve."""
        return pipeline_health(self)

    @property
    def started(self) -> bool:
        """Running, with its sources started (False before `run()` and after it ends)."""
        return self.running_now and self._started is not None and self._started.is_set()

    @property
    def draining(self) -> bool:
        return self._stop_requested is not None and self._stop_requested.is_set()

    @property
    def uptime(self) -> float:
        """Seconds since `run()` started (0 before)."""
        return 0.0 if self._started_at is None else time.monotonic() - self._started_at

    @property
    def api_url(self) -> str | None:
        """The control API's base URL while it is up, e.g. 'http://127.0.0.1:8686'."""
        return self.api.url if self.api is not None else None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Pipeline]:
        """Run in the background of the enclosing task; drain when the block exits."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.run)
            await self.wait_started()
            try:
                yield self
            finally:
                self.stop()

    async def wait_started(self) -> None:
        while self._started is None:
            await anyio.sleep(0.001)
        await self._started.wait()

    # -- running ----------------------------------------------------------------------

    async def run(self) -> None:
        """Run until every source has ended or `stop()` is called, then drain."""
        self._stop_requested = anyio.Event()
        self._started = anyio.Event()
        self.running_now = True
        self._started_at = time.monotonic()
        self._supervisors = {}
        try:
            self.spec.settings.data_dir.mkdir(parents=True, exist_ok=True)
            outputs, inboxes = self._wire()
            self._inboxes = inboxes
            self.registry.pm.hook.revopipe_startup(pipeline=self)
            # Up before any component starts and down only after the last sink closed, so
            # a client sees the whole life of the pipeline, drain included.
            await self._start_api()
            with anyio.CancelScope() as force:
                self._force = force
                deadline = anyio.CancelScope()
                specs = [c for c in self.spec.components.values() if c.kind != "source"]
                pending = _Countdown(len(specs), deadline.cancel)
                async with anyio.create_task_group() as consumers:
                    for spec in specs:
                        consumers.start_soon(
                            pending.track,
                            self._run_consumer(spec, inboxes[spec.name], outputs[spec.name]),
                        )
                    await self._run_sources(outputs)
                    if pending.left:
                        consumers.start_soon(self._drain_deadline, consumers, deadline)
        finally:
            self._started.set()  # wake waiters even when the start itself failed
            self.running_now = False
            self._force = None
            await self._stop_api()
            try:
                self.registry.pm.hook.revopipe_shutdown(pipeline=self)
            except Exception as exc:
                log.error("a plugin's revopipe_shutdown hook raised: %r", exc)

    async def _start_api(self) -> None:
        address = self.spec.settings.api
        if address is None:
            return
        # Imported here: aiohttp is only loaded by pipelines that serve the API.
        from revopipe.runtime.api import ApiServer

        server = ApiServer(self, address)
        await server.start()
        self.api = server

    async def _stop_api(self) -> None:
        server, self.api = self.api, None
        if server is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await server.stop()
            except Exception as exc:  # the drain itself succeeded; do not fail the run
                log.error("stopping the control API raised: %r", exc)

    def _wire(self) -> tuple[dict[str, Outputs], dict[str, Inbox]]:
        outputs = {n: Outputs(self.stats[n]) for n in self.spec.components}
        inboxes: dict[str, Inbox] = {}
        for name, spec in self.spec.components.items():
            if spec.kind == "source":
                continue
            cfg = spec.config
            assert isinstance(cfg, ConsumerConfig)
            inbox = Inbox.create(cfg.buffer, cfg.when_full)
            inboxes[name] = inbox
            for upstream in spec.inputs:
                outputs[upstream].edges.append(inbox.edge_for(self.stats[name]))
            # Each producer holds its own clone; closing the original lets the inbox end
            # exactly when the last producer finishes.
            inbox.send.close()
        return outputs, inboxes

    def _context(self, spec: ComponentSpec) -> ComponentContext:
        return ComponentContext(
            name=spec.name,
            data_dir=self.spec.settings.data_dir,
            logger=logging.getLogger(f"revopipe.{spec.kind}.{spec.name}"),
            stats=self.stats[spec.name],
            pipeline_stats=self.component_stats,
            extras=self.extras,
            tuning=self,
            registry=self.registry,
            control=self.control,
            config_of=self._config_of,
            health=self.health,
            redactor=self.spec.redactor,
        )

    def _config_of(self, name: str) -> ComponentConfig | None:
        spec = self.spec.components.get(name)
        return spec.config if spec is not None else None

    def _supervisor(self, spec: ComponentSpec) -> Supervisor:
        s = self.spec.settings
        sup = Supervisor(spec, self._context(spec), s.restart_backoff, s.max_restart_backoff)
        # Kept so the control API can reach the component's live instance.
        self._supervisors[spec.name] = sup
        return sup

    async def _run_sources(self, outputs: dict[str, Outputs]) -> None:
        assert self._stop_requested is not None and self._started is not None
        stop = self._stop_requested
        sources = [c for c in self.spec.components.values() if c.kind == "source"]
        running = _Countdown(len(sources), stop.set)  # all sources ended: drain
        async with anyio.create_task_group() as tg:
            for spec in sources:
                tg.start_soon(running.track, self._run_source(spec, outputs[spec.name]))
            self._started.set()
            await stop.wait()
            tg.cancel_scope.cancel()
        log.info("sources stopped; draining")

    async def _run_source(self, spec: ComponentSpec, out: Outputs) -> None:
        sup = self._supervisor(spec)

        async def emit(batch: Batch) -> None:
            await out.emit(batch)
            sup.succeeded()  # a source that emits again after a restart has recovered

        try:
            while True:
                try:
                    source = _as_source(await sup.ensure_started())
                    await source.run(emit)
                    return  # a finite source ended
                except Exception as exc:
                    sup.failed(exc, "run")
                    await sup.restart()
        finally:
            # Outputs first: downstream can then drain and release the source's acks
            # while its stop() waits for them (a message-bus source acks on the way out).
            await out.aclose()
            await sup.close()

    async def _run_consumer(self, spec: ComponentSpec, inbox: Inbox, out: Outputs) -> None:
        sup = self._supervisor(spec)
        stats = self.stats[spec.name]
        dead = DeadLetter(self.spec.settings.data_dir, spec.name)
        try:
            await sup.ensure_started()
            async with anyio.create_task_group() as tg:
                if spec.kind == "processor":
                    tg.start_soon(self._ticker, sup, out)
                try:
                    async with inbox.receive:
                        async for batch in inbox.receive:
                            inbox.space.notify()
                            stats.batches_in += 1
                            stats.events_in += len(batch)
                            if spec.kind == "processor":
                                await self._process(sup, batch, out, dead)
                            else:
                                batch = self._coalesce(sup, inbox, batch)
                                await self._write(sup, batch, dead)
                finally:
                    # a closed inbox makes blocked producers' sends fail (counted as
                    # dropped) instead of waiting for space that never comes
                    inbox.space.notify()
                tg.cancel_scope.cancel()
            await self._finish(sup, out, dead)
        finally:
            await sup.close()
            await out.aclose()

    def _coalesce(self, sup: Supervisor, inbox: Inbox, first: Batch) -> Batch:
        """`first` merged with up to `batch_max - 1` batches already waiting: never waits
        for more, so merging adds no latency, only fewer and larger writes under load."""
        cfg = sup.spec.config  # read each time: batch_max is tunable while running
        limit = cfg.batch_max if isinstance(cfg, SinkConfig) else 1
        if limit <= 1:
            return first
        taken = [first]
        while len(taken) < limit:
            try:
                more = inbox.receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            inbox.space.notify()
            sup.stats.batches_in += 1
            sup.stats.events_in += len(more)
            taken.append(more)
        if len(taken) == 1:
            return first
        return Batch(
            MetricBatch.concat(b.metrics for b in taken),
            tuple(e for b in taken for e in b.events),
            acks=tuple(a for b in taken for a in b.acks),
        )

    async def _process(self, sup: Supervisor, batch: Batch, out: Outputs, dead: DeadLetter) -> None:
        # A failing batch is retried once on a fresh instance (the failure may have been
        # the instance's state); failing again, it is dead-lettered, not dropped.
        for attempt in range(2):
            try:
                result = await sup.call(lambda c: _as_processor(c).process(batch), "process")
            except Exception as exc:
                sup.failed(exc, "process")
                await sup.restart()
                if attempt == 0:
                    sup.stats.retries += 1
                    continue
                dead.write(batch, sup.stats.last_error)
                sup.stats.dead_lettered += len(batch)
                # on disk is accepted: a redelivery would only fail the same way again
                release_all(batch.acks)
                return
            sup.succeeded()
            if batch.acks and not _as_processor(sup.instance).holds_acks:
                result = _inherit_acks(result, batch.acks)
            await _forward(result, out)
            return

    async def _write(self, sup: Supervisor, batch: Batch, dead: DeadLetter) -> None:
        cfg = sup.spec.config
        retries = cfg.max_retries if isinstance(cfg, SinkConfig) else 0
        for attempt in range(retries + 1):
            try:
                await sup.call(lambda c: _as_sink(c).write(batch), "write")
            except Exception as exc:
                sup.failed(exc, "write")
                await sup.restart()
                if attempt < retries:
                    sup.stats.retries += 1
                    continue
                dead.write(batch, sup.stats.last_error)
                sup.stats.dead_lettered += len(batch)
                release_all(batch.acks)
                return
            sup.succeeded()
            release_all(batch.acks)
            return

    async def _ticker(self, sup: Supervisor, out: Outputs) -> None:
        instance = await sup.ensure_started()
        interval = _as_processor(instance).tick_interval
        if not interval:
            return
        while True:
            await anyio.sleep(interval)
            try:
                result = await sup.call(lambda c: _as_processor(c).tick(), "tick")
            except Exception as exc:
                sup.failed(exc, "tick")
                await sup.restart()
                continue
            await _forward(result, out)

    async def _finish(self, sup: Supervisor, out: Outputs, dead: DeadLetter) -> None:
        """Drain: a processor emits what its windows hold, a sink flushes."""
        try:
            if sup.spec.kind == "processor":
                result = await sup.call(lambda c: _as_processor(c).flush(), "flush")
                await _forward(result, out)
            else:
                await sup.call(lambda c: _as_sink(c).flush(), "flush")
        except Exception as exc:
            sup.failed(exc, "flush")

    async def _drain_deadline(self, consumers: TaskGroup, scope: anyio.CancelScope) -> None:
        """Started once sources have stopped: if the drain outlasts `drain_timeout`,
        cancel what is left rather than hang the process. `scope` is cancelled when the
        last consumer finishes."""
        timeout = self.spec.settings.drain_timeout
        with scope:
            await anyio.sleep(timeout)
        if scope.cancel_called:
            return
        log.error("drain did not finish within %.1fs; cancelling the remaining components", timeout)
        consumers.cancel_scope.cancel()


class _Countdown:
    """Calls `on_zero` once the last of `left` tracked tasks has finished, however it
    finished."""

    def __init__(self, left: int, on_zero: Callable[[], object]) -> None:
        self.left = left
        self.on_zero = on_zero

    async def track(self, task: Awaitable[None]) -> None:
        try:
            await task
        finally:
            self.left -= 1
            if self.left == 0:
                self.on_zero()


def first_error(exc: BaseException) -> BaseException:
    """The underlying error of a task group's exception group (task groups wrap even a
    single failure), so callers can report and catch it by its own type."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _inherit_acks(
    result: Batch | Sequence[Batch] | None, acks: tuple[Ack, ...]
) -> Batch | Sequence[Batch] | None:
    """A processor's output carries its input's acks: the upstream delivery is accepted
    once every output batch is (none at all: the processor consumed it, accepted)."""
    outs = [] if result is None else [result] if isinstance(result, Batch) else list(result)
    outs = [b for b in outs if len(b)]
    if not outs:
        release_all(acks)
        return None
    retain_all(acks, len(outs) - 1)
    mine = {id(a) for a in acks}
    # a pass-through output already carries them: never hold the same ack twice
    return [b.with_acks((*(a for a in b.acks if id(a) not in mine), *acks)) for b in outs]


async def _forward(result: Batch | Sequence[Batch] | None, out: Outputs) -> None:
    if result is None:
        return
    if isinstance(result, Batch):
        await out.emit(result)
        return
    for b in result:
        await out.emit(b)


def _as_source(c: object) -> Source[Any]:
    assert isinstance(c, Source)
    return c


def _as_processor(c: object) -> Processor[Any]:
    assert isinstance(c, Processor)
    return c


def _as_sink(c: object) -> Sink[Any]:
    assert isinstance(c, Sink)
    return c
