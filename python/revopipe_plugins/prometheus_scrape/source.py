"""Scrapes Prometheus exposition endpoints on an interval, every target concurrently."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx
from pydantic import Field, field_validator, model_validator

from revopipe.batch import Batch, MetricBatch, MetricBatchBuilder
from revopipe.components import Emit, Source
from revopipe.config import Duration, Size, SourceConfig
from revopipe.events import MetricKind, now_ns
from revopipe_plugins.prometheus_scrape.parse import to_metrics_or_error

# What we ask for: the 0.0.4 text first (its parser is the faster of the two), OpenMetrics
# from servers that only speak that.
ACCEPT = "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"


def instance_of(url: str) -> str:
    """host:port of a target URL, as Prometheus labels it."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ScrapeConfig(SourceConfig):
    targets: list[str] = Field(
        min_length=1, description="URLs to scrape, e.g. ['http://127.0.0.1:9100/metrics']"
    )
    interval: Duration = Field(default=15.0, gt=0, description="how often to scrape, e.g. '15s'")
    timeout: Duration = Field(
        default=10.0, gt=0, description="give up on a scrape after this long (<= interval)"
    )
    job: str | None = Field(
        default=None, description="the `job` tag of every series (default: this source's name)"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="extra tags added to every scraped series"
    )
    honor_labels: bool = Field(
        default=False,
        description="on a clash with `instance`, `job` or `labels`, keep the scraped label "
        "(true) or rename it exported_<name> (false, as Prometheus does)",
    )
    max_body: Size = Field(
        default=64 * 2**20, ge=1, description="refuse a response larger than this, e.g. '64MiB'"
    )

    @field_validator("targets")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"target {url!r} is not an http(s) URL; write it like "
                    "'http://127.0.0.1:9100/metrics'"
                )
        return v

    @model_validator(mode="after")
    def _timeout_fits(self) -> ScrapeConfig:
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout ({self.timeout:g}s) is longer than interval ({self.interval:g}s); "
                "lower `timeout` or raise `interval`"
            )
        return self


class ScrapeError(Exception):
    """A target that could not be scraped, with a message fit for the log."""


@dataclass
class Target:
    url: str
    tags: dict[str, str]
    last_error: str | None = field(default=None)
    scrapes: int = 0


class PrometheusScrapeSource(Source[ScrapeConfig]):
    type_name = "prometheus_scrape"
    Config = ScrapeConfig
    description = "scrapes Prometheus /metrics endpoints (text 0.0.4 and OpenMetrics)"

    async def start(self) -> None:
        cfg = self.config
        job = cfg.job or self.context.name
        self.targets = [
            Target(url, {**cfg.labels, "job": job, "instance": instance_of(url)})
            for url in cfg.targets
        ]
        self._client = httpx.AsyncClient(
            timeout=cfg.timeout,
            follow_redirects=True,
            headers={
                "Accept": ACCEPT,
                "User-Agent": "revopipe-prometheus-scrape",
                "X-Prometheus-Scrape-Timeout-Seconds": f"{cfg.timeout:g}",
            },
        )

    async def run(self, emit: Emit) -> None:
        interval = self.config.interval
        next_at = time.monotonic()
        while True:
            batch = await self.scrape_all()
            await emit(batch)
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # slower than the interval: skip the missed ticks
                next_at = now + interval - (now - next_at) % interval
            await anyio.sleep(next_at - now)

    async def scrape_all(self) -> Batch:
        """Scrape every target concurrently; one batch with all their rows."""
        results: list[MetricBatch] = [MetricBatch()] * len(self.targets)

        async def one(i: int, target: Target) -> None:
            results[i] = await self.scrape(target)

        async with anyio.create_task_group() as tg:
            for i, target in enumerate(self.targets):
                tg.start_soon(one, i, target)
        return Batch(MetricBatch.concat(results))

    async def scrape(self, target: Target) -> MetricBatch:
        """One target's rows plus `up`, `scrape_duration_seconds` and
        `scrape_samples_scraped`. Never raises for the target's faults: they give up=0."""
        started_ns = now_ns()
        t0 = time.perf_counter()
        rows = MetricBatch()
        error = None
        try:
            with anyio.fail_after(self.config.timeout):
                text, openmetrics = await self._fetch(target.url)
            # a thread: a large exposition takes the pure-Python parser a while
            rows, error = await anyio.to_thread.run_sync(
                to_metrics_or_error,
                text,
                openmetrics,
                target.tags,
                self.config.honor_labels,
                started_ns,
            )
        except ScrapeError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"no complete response within timeout {self.config.timeout:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc or 'request failed'}"
        duration = time.perf_counter() - t0
        self._report(target, error)
        b = MetricBatchBuilder(default_ts=started_ns)
        g = MetricKind.GAUGE
        b.add("up", 0.0 if error else 1.0, g, "1", target.tags)
        b.add("scrape_duration_seconds", duration, g, "s", target.tags)
        b.add("scrape_samples_scraped", float(len(rows)), g, "1", target.tags)
        b.extend(rows)
        target.scrapes += 1
        return b.build()

    async def _fetch(self, url: str) -> tuple[str, bool]:
        limit = self.config.max_body
        async with self._client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise ScrapeError(f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip())
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise ScrapeError(f"response of {declared} bytes is over max_body ({limit})")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ScrapeError(f"response is over max_body ({limit} bytes)")
                chunks.append(chunk)
            content_type = resp.headers.get("Content-Type", "")
        openmetrics = content_type.split(";")[0].strip().lower() == "application/openmetrics-text"
        return b"".join(chunks).decode("utf-8", "replace"), openmetrics

    def _report(self, target: Target, error: str | None) -> None:
        # log changes, not every failed scrape: a target down for an hour is one line
        if error is not None and error != target.last_error:
            self.log.warning(
                "prometheus_scrape %r: target %s is down (up=0): %s; check that it is "
                "running and serves the Prometheus text format at that URL",
                self.context.name,
                target.url,
                error,
            )
        elif error is None and target.last_error is not None:
            self.log.info("prometheus_scrape %r: target %s is up", self.context.name, target.url)
        target.last_error = error

    async def stop(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            await client.aclose()
