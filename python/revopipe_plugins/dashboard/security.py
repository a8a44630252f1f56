"""The dashboard's safety rules, in one place (see docs/dashboard.md, "Security"):

- Bound to loopback (the default), it answers only requests addressed to a loopback
  name, so a web page cannot rebind its own DNS name to 127.0.0.1 and read it.
- With a `token` (required off loopback) every request needs it: an
  `Authorization: Bearer` header, or the session cookie the page gets by opening
  `/?token=...` once (HttpOnly, SameSite=Strict; it holds an HMAC of the token, never the
  token).
- Every POST needs the per-process CSRF token in `X-CSRF-Token` (the page has it; the
  `revopipe_csrf` cookie carries it too, double-submit), and a same-origin `Origin` when
  the client sends one (browsers always do on POST).
- Every string a response carries passes through the config's redactor plus the
  dashboard's own token, so an interpolated secret never reaches the page.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from revopipe.config.address import is_loopback
from revopipe.config.redact import Redactor

SESSION_COOKIE = "revopipe_dashboard"
CSRF_COOKIE = "revopipe_csrf"
CSRF_HEADER = "x-csrf-token"
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class Security:
    """Checks one dashboard's requests: `local` when bound to loopback, `token` when set."""

    def __init__(self, *, local: bool, token: str | None, redactor: Redactor) -> None:
        self.local = local
        self.token = token
        self.csrf = secrets.token_urlsafe(32)
        """Random per process: a page rendered before a restart must be reloaded."""
        self.session = (
            hmac.new(token.encode(), b"revopipe dashboard session", hashlib.sha256).hexdigest()
            if token
            else ""
        )
        self.redactor = redactor
        # The dashboard's own token may be written in the file, not interpolated: the
        # config's redactor would not know it.
        self.own = Redactor([token] if token else [])

    # -- authentication ---------------------------------------------------------------

    def authenticated(self, headers: Mapping[str, str], query: str, path: str) -> bool:
        """True without a token, else when the request carries it (or its session)."""
        if not self.token:
            return True
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and _same(auth[7:].strip(), self.token):
            return True
        cookie = cookies(headers).get(SESSION_COOKIE, "")
        if cookie and _same(cookie, self.session):
            return True
        # Only the page itself takes the token in the URL (a link a person opens once);
        # it answers with the session cookie and a redirect that drops the token.
        if path == "/":
            given = parse_qs(query).get("token", [""])[0]
            return bool(given) and _same(given, self.token)
        return False

    def host_allowed(self, headers: Mapping[str, str]) -> bool:
        if not self.local:
            return True
        host = hostname(headers.get("host", "localhost"))
        return host in _LOCAL_HOSTS or is_loopback(host)

    # -- writes -----------------------------------------------------------------------

    def refuse_write(self, headers: Mapping[str, str], scheme: str) -> str | None:
        """Why a POST must not act, or None."""
        given = headers.get(CSRF_HEADER, "")
        if not given or not _same(given, self.csrf):
            return (
                "missing or wrong CSRF token: send the `X-CSRF-Token` header with the token "
                "of the page (GET /api/widgets answers it as `csrf_token`); reload the page "
                "after a restart of the pipeline"
            )
        cookie = cookies(headers).get(CSRF_COOKIE)
        if cookie is not None and not _same(cookie, self.csrf):
            return "the CSRF cookie does not match the X-CSRF-Token header; reload the page"
        origin = headers.get("origin")
        if origin is not None:
            own = f"{scheme}://{headers.get('host', '')}".lower()
            if origin.lower() != own:
                return f"requests from another origin ({origin}) may not change state"
        return None

    # -- output -----------------------------------------------------------------------

    def redact(self, value: Any) -> Any:
        """`value` with every string (not keys: those are chosen by code) redacted."""
        if isinstance(value, str):
            return self.own.text(self.redactor.text(value))
        if isinstance(value, Mapping):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(v) for v in value]
        return value

    def dumps(self, value: Any) -> str:
        return json.dumps(self.redact(value), separators=(",", ":"), default=str)


class Guard:
    """ASGI middleware applying the Host and token rules to every request."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        sec = self.security
        if not sec.host_allowed(headers):
            host = headers.get("host", "")
            await JSONResponse(
                {"error": f"Host {host!r} is not a loopback name; use 127.0.0.1"}, status_code=421
            )(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        if not sec.authenticated(headers, query, scope["path"]):
            await JSONResponse(
                {
                    "error": "this dashboard needs its token: open /?token=<token> once in "
                    "the browser, or send 'Authorization: Bearer <token>' (the dashboard "
                    "sink's `token`)"
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)


def cookies(headers: Mapping[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header is treated as none
        return {}
    return {k: m.value for k, m in jar.items()}


def hostname(host_header: str) -> str:
    """The name in a Host header: 'a:1' -> 'a', '[::1]:1' -> '::1'."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
