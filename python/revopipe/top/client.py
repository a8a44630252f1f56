"""Finding a running pipeline's control API and polling it."""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from revopipe.config.address import format_address, parse_address
from revopipe.config.interpolate import Interpolator
from revopipe.config.schema import PipelineSettings
from revopipe.runtime.api import API_FILE, PREFIX, pid_alive, read_api_file

DEFAULT_URL = "http://127.0.0.1:8686"
START_HINT = (
    "start it with `revopipe run {config} --api 127.0.0.1:0` (or set "
    '`api = "127.0.0.1:8686"` under [pipeline]), or pass {flag}'
)


class TopError(Exception):
    """No usable instance: the message says where revopipe looked and what to do."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the API is, and how we learned it (for error messages)."""

    url: str
    origin: str
    config: Path | None = None
    flag: str = "--url"
    """The command's option that names a URL, for error messages (`--api` elsewhere)."""

    def relocate(self) -> Target:
        """Look again (a restarted pipeline may have a new port); self if nothing new."""
        if self.config is None:
            return self
        try:
            return locate(self.config, None, flag=self.flag)
        except TopError:
            return self


def normalize_url(url: str) -> str:
    """'127.0.0.1:8686', 'http://h:1/' or 'http://h:1/api/v1' -> 'http://h:1'."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    url = url.rstrip("/")
    return url.removesuffix(PREFIX).rstrip("/")


def locate(config: Path | None, url: str | None, *, flag: str = "--url") -> Target:
    """The API to read: `url` if given; else the `api.json` of the pipeline `config`
    describes; else the default data_dir's `api.json`, then the default address. `flag`
    is the option that passes `url`, named in error messages."""
    if url is not None:
        return Target(normalize_url(url), flag, flag=flag)
    if config is None:
        default = Path(PipelineSettings().data_dir) / API_FILE
        if default.exists():
            return _from_file(default, None, flag)
        return Target(DEFAULT_URL, f"the default address (no CONFIG or {flag} given)", flag=flag)
    data_dir, address = _pipeline_table(config, flag)
    file = data_dir / API_FILE
    if file.exists():
        return _from_file(file, config, flag)
    if address is not None and not address.endswith(":0"):
        # No file (e.g. run from another directory, so data_dir differs): the configured
        # fixed address still names the instance.
        host, port = parse_address(address)
        return Target(f"http://{format_address(host, port)}", f"`api` in {config}", config, flag)
    raise TopError(
        f"no running instance of {config}: {file.resolve()} does not exist (it is written "
        "while the pipeline serves its API, and data_dir is relative to the directory "
        f"`revopipe run` was started in); {START_HINT.format(config=config, flag=flag)}"
    )


def _from_file(file: Path, config: Path | None, flag: str = "--url") -> Target:
    record = read_api_file(file)
    if record is None or not isinstance(record.get("url"), str):
        raise TopError(
            f"{file} is not a revopipe api.json (expected {{'url', 'pid', 'started'}}); "
            f"delete it and restart the pipeline, or pass {flag}"
        )
    pid = record.get("pid")
    if not pid_alive(pid):
        raise TopError(
            f"{file} names pid {pid}, which is not running (the pipeline was killed before "
            "it could remove the file); start the pipeline again, or delete the stale file"
        )
    return Target(normalize_url(record["url"]), str(file), config, flag)


def _pipeline_table(config: Path, flag: str = "--url") -> tuple[Path, str | None]:
    """data_dir and api from the file's [pipeline] table. Read alone, so `top` works
    without the secrets the rest of the file interpolates."""
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TopError(
            f"cannot read {config}: {exc.strerror}; pass the pipeline's config file, or {flag}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise TopError(f"{config} is not valid TOML: {exc}; run `revopipe validate`") from None
    table = data.get("pipeline", {})
    if not isinstance(table, Mapping):
        table = {}
    interpolator = Interpolator()
    raw = {k: table[k] for k in ("data_dir", "api") if k in table}
    values = interpolator.apply(raw, "pipeline")
    if interpolator.errors:
        e = interpolator.errors[0]
        raise TopError(f"{config}: {e.where}: {e.problem}; {e.fix}")
    data_dir = values.get("data_dir", PipelineSettings().data_dir)
    api = values.get("api")
    try:
        address = parse_address(api) if isinstance(api, str) else None
    except ValueError:
        address = None
    return Path(str(data_dir)), (format_address(*address) if address else None)


@dataclass(frozen=True, slots=True)
class Sample:
    """One poll: the server's monotonic `timestamp` and every component's counters."""

    timestamp: float
    components: list[dict[str, Any]]
    pipeline: dict[str, Any]


class ApiClient:
    def __init__(self, target: Target, timeout: float = 5.0) -> None:
        self.target = target
        self._http = httpx.Client(timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str) -> dict[str, Any]:
        url = f"{self.target.url}{PREFIX}/{path}"
        via = "" if self.target.origin == self.target.flag else f" (from {self.target.origin})"
        try:
            r = self._http.get(url)
        except httpx.ConnectError:
            raise TopError(
                f"cannot reach the revopipe API at {self.target.url}{via}: connection "
                f"refused; is the pipeline running with its API on? "
                f"{START_HINT.format(config=self.target.config or 'CONFIG', flag=self.target.flag)}"
            ) from None
        except httpx.TimeoutException:
            raise TopError(
                f"the revopipe API at {self.target.url}{via} did not answer within "
                f"{self._http.timeout.read}s; is the process stopped or overloaded?"
            ) from None
        except httpx.HTTPError as exc:
            raise TopError(f"cannot query {url}{via}: {exc}; check the URL") from None
        body: object = None
        with contextlib.suppress(ValueError):
            body = r.json()
        # /health answers 503 with a normal body while a component is unhealthy
        if not isinstance(body, dict) or (r.status_code != 200 and "status" not in body):
            raise TopError(
                f"{url}{via} answered HTTP {r.status_code} without a revopipe API body; "
                "is that address a revopipe pipeline (`--api` / `[pipeline] api`)?"
            )
        return body

    def sample(self) -> Sample:
        pipeline = self.get("pipeline")
        components = self.get("components")
        rows = components.get("components")
        ts = components.get("timestamp")
        if not isinstance(rows, list) or not isinstance(ts, int | float):
            raise TopError(
                f"{self.target.url}{PREFIX}/components lacks 'components' or 'timestamp'; "
                "is the pipeline a different revopipe version than this client?"
            )
        return Sample(float(ts), rows, pipeline)
