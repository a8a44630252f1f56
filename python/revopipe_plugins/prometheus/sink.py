"""Serves the latest state of every series on `/metrics` for Prometheus to scrape."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field, field_validator

from revopipe.batch import Batch
from revopipe.components import Sink
from revopipe.config import Duration, SinkConfig
from revopipe.config.address import Address, parse_address
from revopipe.events import HistogramSnapshot
from revopipe.wire.prometheus import check_buckets, default_buckets, negotiate
from revopipe_plugins.prometheus.exposition import Exposition

_MAX_WARNED = 1000


class PrometheusConfig(SinkConfig):
    listen: Address = Field(
        default="127.0.0.1:9464",
        description="host:port to serve on; port 0 picks a free one, ':9464' every interface",
    )
    path: str = Field(default="/metrics", description="the URL path Prometheus scrapes")
    expire_after: Duration = Field(
        default=300.0, gt=0, description="drop a series not updated for this long, e.g. '5m'"
    )
    buckets: list[float] | None = Field(
        default=None,
        description="bucket bounds for every histogram (ascending, finite); "
        "default: per unit (OpenTelemetry's seconds buckets for 's', scaled for 'ms', ...)",
    )
    buckets_by_unit: dict[str, list[float]] = Field(
        default_factory=dict,
        description="bucket bounds per unit, e.g. {s = [0.01, 0.1, 1], By = [1024, 65536]}",
    )

    @field_validator("path")
    @classmethod
    def _path_ok(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"expected a path starting with '/', such as '/metrics', got {v!r}")
        return v

    @field_validator("buckets")
    @classmethod
    def _buckets_ok(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            check_buckets(v)
        return v

    @field_validator("buckets_by_unit")
    @classmethod
    def _unit_buckets_ok(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for unit, bounds in v.items():
            try:
                check_buckets(bounds)
            except ValueError as exc:
                raise ValueError(f"unit {unit!r}: {exc}") from None
        return v


class PrometheusSink(Sink[PrometheusConfig]):
    type_name = "prometheus"
    Config = PrometheusConfig
    description = "serves /metrics for Prometheus (text 0.0.4 or OpenMetrics with exemplars)"

    async def start(self) -> None:
        cfg = self.config
        by_unit = {u: check_buckets(b) for u, b in cfg.buckets_by_unit.items()}
        everything = check_buckets(cfg.buckets) if cfg.buckets is not None else None

        def buckets_for(unit: str) -> tuple[float, ...]:
            if everything is not None:
                return everything
            return by_unit.get(unit) or default_buckets(unit)

        self._warned: set[tuple[str, str]] = set()
        self.exposition = Exposition(
            buckets_for,
            cfg.expire_after,
            self_labels=(("sink", self.context.name),),
            on_reject=self._rejected,
        )
        app = web.Application()
        app.router.add_get(cfg.path, self._serve)
        self._runner: web.AppRunner | None = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host, port = parse_address(cfg.listen, "127.0.0.1:9464")
        try:
            await web.TCPSite(self._runner, host or None, port).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(
                f"prometheus sink {self.context.name!r}: cannot listen on {cfg.listen!r} "
                f"({exc.strerror or exc}); set `listen` to a free host:port"
            ) from exc
        self.log.info("serving Prometheus metrics on http://%s%s", self.address, cfg.path)

    @property
    def port(self) -> int:
        """The bound port (the one picked when `listen` asks for port 0)."""
        assert self._runner is not None, "not started"
        return int(self._runner.addresses[0][1])

    @property
    def address(self) -> str:
        assert self._runner is not None, "not started"
        host, port = self._runner.addresses[0][:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def _serve(self, request: web.Request) -> web.Response:
        fmt = negotiate(request.headers.get("Accept"))
        body = self.exposition.render(fmt)
        return web.Response(body=body, headers={"Content-Type": fmt.content_type})

    def _rejected(self, name: str, reason: str) -> None:
        key = (name, reason)
        if key in self._warned:
            return
        if len(self._warned) < _MAX_WARNED:
            self._warned.add(key)
        self.log.warning(
            "prometheus sink %r: not exporting %r: %s", self.context.name, name, reason
        )

    async def write(self, batch: Batch) -> None:
        dropped = self.exposition.add_metrics(batch.metrics)
        for event in batch.events:
            if not isinstance(event, HistogramSnapshot):
                continue
            try:
                if not self.exposition.add_snapshot(event):
                    dropped += 1
            except ValueError as exc:
                # the rest of the batch is applied: raising would make the runtime retry
                # it and count every other snapshot twice
                dropped += 1
                self.log.error(
                    "prometheus sink %r: dropped a histogram snapshot of %r: %s; it is not a "
                    "valid HdrHistogram V2 snapshot (check the sender's revopipe version)",
                    self.context.name,
                    event.name,
                    exc,
                )
        self.context.stats.dropped += dropped

    async def stop(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None:
            await runner.cleanup()
            self._runner = None
