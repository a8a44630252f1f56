"""What to run: the requests, the model and the stage schedule, from a `[sources.x]` table
or the `revopipe loadtest` flags (both validate through `LoadTestPlan`), turned into the
arguments of `revopipe._core.LoadGenerator`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from revopipe.config import Duration, Size
from revopipe_plugins.loadtest.stages import (
    PRESETS,
    RequestSpec,
    Schedule,
    custom,
    expand_volume,
    preset,
)
from revopipe_plugins.loadtest.thresholds import parse_all

TestType = Literal["smoke", "load", "stress", "spike", "volume", "endurance", "custom"]
Model = Literal["closed", "open"]


class RequestConfig(BaseModel):
    """One request of the mix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="an http:// URL, e.g. 'http://127.0.0.1:8000/api'")
    method: str = Field(default="GET", description="HTTP method")
    weight: float = Field(default=1.0, gt=0, description="share of the mix")
    headers: dict[str, str] = Field(default_factory=dict, description="request headers")
    body: str | None = Field(default=None, description="request body text")
    body_file: Path | None = Field(default=None, description="file whose bytes are the body")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"{v!r} is not an http:// URL with a host; the generator speaks plain "
                "HTTP/1.1, e.g. 'http://127.0.0.1:8000/api'"
            )
        return v

    @model_validator(mode="after")
    def _one_body(self) -> RequestConfig:
        if self.body is not None and self.body_file is not None:
            raise ValueError("give body or body_file, not both")
        return self

    def spec(self) -> RequestSpec:
        body: bytes | None = None
        if self.body is not None:
            body = self.body.encode()
        elif self.body_file is not None:
            try:
                body = self.body_file.read_bytes()
            except OSError as exc:
                raise ValueError(
                    f"body_file {str(self.body_file)!r}: cannot read it: "
                    f"{exc.strerror or exc}; check the path"
                ) from None
        return (self.method.upper(), self.url, list(self.headers.items()), body, self.weight)


class LoadTestPlan(BaseModel):
    """A load test. `users` alone: the closed model with that many virtual users. `rps`:
    the open model at that arrival rate, with `users` (if given) as the connection pool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(default=None, description="the URL to load (or give `requests`)")
    requests: list[RequestConfig] = Field(
        default_factory=list, description="weighted request mix (instead of `url`)"
    )
    method: str = Field(default="GET", description="method for `url`")
    headers: dict[str, str] = Field(default_factory=dict, description="headers for `url`")
    body: str | None = Field(default=None, description="body for `url`")
    body_file: Path | None = Field(default=None, description="body file for `url`")
    test: TestType = Field(default="load", description="the shape: " + ", ".join(PRESETS))
    model: Model | None = Field(
        default=None, description="'closed' (users) or 'open' (arrival rate); default from rps"
    )
    users: int | None = Field(default=None, ge=1, description="virtual users / connections")
    rps: float | None = Field(default=None, gt=0, description="target arrivals per second")
    duration: Duration | None = Field(
        default=None, gt=0, description="how long, e.g. '5m' (default: the test type's)"
    )
    stages: list[str] = Field(
        default_factory=list, description="custom stages 'duration:target', e.g. ['30s:50']"
    )
    think_time: Duration = Field(default=0.0, ge=0, description="closed model pause")
    timeout: Duration = Field(default=10.0, gt=0, description="per request, e.g. '10s'")
    expected_status: list[int] | None = Field(
        default=None, description="statuses that count as success (default: 2xx and 3xx)"
    )
    thresholds: list[str] = Field(
        default_factory=list, description="pass/fail criteria, e.g. ['p99 < 250ms']"
    )
    volume_urls: int = Field(
        default=1000, ge=1, description="volume test: distinct URLs per request"
    )
    volume_body: Size = Field(default=0, ge=0, description="volume test: body size, e.g. '64KiB'")
    threads: int = Field(default=0, ge=0, description="generator threads (0 = all cores)")
    seed: int = Field(default=0, description="seed of the request mix")

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[str]) -> list[str]:
        parse_all(v)  # ThresholdError is a ValueError naming the column and the fix
        return v

    @model_validator(mode="after")
    def _check(self) -> LoadTestPlan:
        if (self.url is None) == (not self.requests):
            raise ValueError("give either `url` or `requests` (a weighted mix), not both")
        if self.test == "custom" and not self.stages:
            raise ValueError("test = 'custom' needs `stages`, e.g. ['30s:20', '1m:20', '10s:0']")
        if self.stages and self.test != "custom":
            raise ValueError(f"`stages` are for test = 'custom', not {self.test!r}")
        if self.test != "custom" and self.users is None and self.rps is None:
            raise ValueError("give `users` (closed model) or `rps` (open model)")
        if self.model == "open" and self.rps is None and self.test != "custom":
            raise ValueError("the open model needs `rps`, the arrival rate to reach")
        if self.url is not None:
            self._single()  # its URL and body errors now, at validation
        self.schedule()  # stage errors now, at validation
        return self

    @property
    def resolved_model(self) -> Model:
        if self.model is not None:
            return self.model
        if self.rps is not None:
            return "open"
        hint = self.schedule().model_hint if self.test == "custom" else None
        return hint or "closed"

    def schedule(self) -> Schedule:
        if self.test == "custom":
            return custom(self.stages)
        target = self.rps if self.model != "closed" and self.rps is not None else self.users
        assert target is not None
        return preset(self.test, float(target), self.duration)

    def _single(self) -> RequestConfig:
        """The one request `url` and its sibling keys describe."""
        assert self.url is not None
        return RequestConfig(
            url=self.url,
            method=self.method,
            headers=self.headers,
            body=self.body,
            body_file=self.body_file,
        )

    def request_specs(self) -> list[RequestSpec]:
        specs = (
            [self._single().spec()] if self.url is not None else [r.spec() for r in self.requests]
        )
        if self.schedule().volume:
            specs = expand_volume(specs, self.volume_urls, int(self.volume_body))
        return specs

    def generator_args(self) -> dict[str, Any]:
        """Keyword arguments of `revopipe._core.LoadGenerator`."""
        schedule = self.schedule()
        model = self.resolved_model
        return {
            "requests": self.request_specs(),
            "model": model,
            "stages": schedule.as_core(),
            "start_target": schedule.start_target,
            "max_connections": (self.users or 0) if model == "open" else 0,
            "think_time": float(self.think_time),
            "timeout": float(self.timeout),
            "expected_status": self.expected_status,
            "threads": self.threads,
            "seed": self.seed,
        }
