"""The client side of control actions (`Component.control`): find a running pipeline's
API and call an action of one of its components. For plugin commands such as
`revopipe alerts ack`::

    @click.command()
    @api_options
    def ack(config: Path | None, api: str | None) -> None:
        url = resolve_api_url(config, api)
        click.echo(call_control(url, "alerts", "ack", {"id": "..."}, post=True))

Errors are `ControlClientError`, a `click.ClickException`: uncaught in a command, click
prints the message (which says what went wrong and what to do) and exits with status 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx

from revopipe.top.client import START_HINT, TopError, locate, normalize_url

PREFIX = "/api/v1"
F = TypeVar("F", bound=Callable[..., Any])


class ControlClientError(click.ClickException):
    """A control call failed; `status` is the API's HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def resolve_api_url(config: Path | None, api: str | None) -> str:
    """The base URL of the running pipeline's API: `api` if given, else the
    `<data_dir>/api.json` of the pipeline `config` describes (what `revopipe top` reads),
    else `./.revopipe/api.json`, else the default address."""
    try:
        return locate(config, api, flag="--api").url
    except TopError as exc:
        raise ControlClientError(str(exc)) from None


def api_options(fn: F) -> F:
    """Adds `--config PATH` and `--api URL` to a click command; pass the two values to
    `resolve_api_url`."""
    fn = click.option(
        "--api",
        "api",
        metavar="URL",
        help="the pipeline's control API, e.g. http://127.0.0.1:8686 (default: from the "
        "config's <data_dir>/api.json, else ./.revopipe/api.json, else http://127.0.0.1:8686)",
    )(fn)
    fn = click.option(
        "--config",
        "-c",
        "config",
        type=click.Path(path_type=Path, dir_okay=False),
        help="the running pipeline's config file, to find its API",
    )(fn)
    return fn


def call_control(
    api_url: str,
    component: str,
    action: str,
    params: Mapping[str, Any] | None = None,
    *,
    post: bool = False,
    timeout: float = 30.0,
) -> Any:
    """Call `action` of `component` and return its result. GET sends `params` as the query
    string (values are turned into strings; a list repeats the key), POST as a JSON body
    (for actions that change state). Raises `ControlClientError` with the server's
    message."""
    base = normalize_url(api_url)
    url = f"{base}{PREFIX}/components/{component}/control/{action}"
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as http:
            if post:
                r = http.post(url, json=dict(params or {}))
            else:
                r = http.get(url, params=_query(params or {}))
    except httpx.ConnectError:
        raise ControlClientError(
            f"cannot reach the revopipe API at {base}: connection refused; is the pipeline "
            f"running with its API on? {START_HINT.format(config='CONFIG', flag='--api')}"
        ) from None
    except httpx.TimeoutException:
        raise ControlClientError(
            f"the revopipe API at {base} did not answer within {timeout:g}s; is the process "
            "stopped or overloaded?"
        ) from None
    except httpx.HTTPError as exc:
        raise ControlClientError(f"cannot call {url}: {exc}; check the URL") from None
    body: object = None
    with contextlib.suppress(ValueError):
        body = r.json()
    if not isinstance(body, dict):
        raise ControlClientError(
            f"{url} answered HTTP {r.status_code} without a revopipe API body; is that "
            "address a revopipe pipeline (`--api` / `[pipeline] api`) of this version?",
            r.status_code,
        )
    if r.status_code != 200:
        message = body.get("error") or f"HTTP {r.status_code}"
        raise ControlClientError(str(message), r.status_code)
    if "result" not in body:
        raise ControlClientError(
            f"{url} answered without a 'result'; is the pipeline a different revopipe "
            "version than this client?",
            r.status_code,
        )
    return body["result"]


def component_of_type(api_url: str, type_name: str) -> str:
    """The name of the one component of type `type_name` in the pipeline at `api_url`.
    Without an answer from the API, `type_name` itself (the usual name), so the real call
    reports the connection problem with its full hint. Raises `ControlClientError` when
    there is none or several (pick one with --component)."""
    try:
        with httpx.Client(timeout=10.0, trust_env=False) as http:
            body = http.get(f"{normalize_url(api_url)}{PREFIX}/pipeline").json()
    except (httpx.HTTPError, ValueError):
        return type_name
    names = [c["name"] for c in body.get("components", []) if c.get("type") == type_name]
    if len(names) == 1:
        return str(names[0])
    if not names:
        raise ControlClientError(
            f"the pipeline at {api_url} has no `{type_name}` component; add one with "
            f"type = '{type_name}' to its config"
        )
    raise ControlClientError(
        f"the pipeline at {api_url} has several {type_name} components ({', '.join(names)}); "
        "pick one with --component"
    )


def _query(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        out.extend((key, _text(v)) for v in values)
    return tuple(out)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
