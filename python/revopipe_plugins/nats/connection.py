"""Connecting to NATS: reconnect forever with a short wait, log connection changes."""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Protocol

import anyio
import nats
from nats.aio.client import Client
from pydantic import SecretStr

# While nats-server restarts, buffered outgoing data is kept up to this size; the sink
# waits for the connection rather than publishing into the buffer, so little is needed.
PENDING_SIZE = 8 * 2**20
RECONNECT_WAIT = 0.5
CONNECT_TIMEOUT = 2.0
FIRST_CONNECT_DEADLINE = 4.0

_USERINFO = re.compile(r"//[^@/]*@")


class ConnectionSettings(Protocol):
    @property
    def url(self) -> list[str]: ...
    @property
    def token(self) -> SecretStr | None: ...
    @property
    def user(self) -> SecretStr | None: ...
    @property
    def password(self) -> SecretStr | None: ...


class NatsConnectError(RuntimeError):
    """The first connection failed; start() raises it and the runtime retries later."""


def safe_urls(urls: list[str]) -> str:
    """The URLs without credentials, for messages."""
    return ", ".join(_USERINFO.sub("//***@", u) for u in urls)


async def connect(
    cfg: ConnectionSettings, kind: str, component: str, log: logging.Logger
) -> Client:
    """A connection that reconnects forever: a component outlives nats-server restarts."""

    async def on_error(exc: Exception) -> None:
        # Reconnect attempts report every refused connection; only the changes below
        # are worth a warning.
        log.debug("nats %s %r: %s", kind, component, exc)

    async def on_disconnected() -> None:
        if nc.is_closed:
            return  # our own close()
        log.warning("nats %s %r: disconnected from NATS, reconnecting", kind, component)

    async def on_reconnected() -> None:
        log.info(
            "nats %s %r: reconnected to %s", kind, component, safe_urls([str(nc.connected_url)])
        )

    nc = Client()
    try:
        # nats-py retries the first connection forever too when reconnects are unlimited;
        # start() fails instead, so the component shows as unhealthy and is retried.
        with anyio.fail_after(FIRST_CONNECT_DEADLINE):
            await nc.connect(
                servers=cfg.url,
                name=f"revopipe {kind} {component}",
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]
                connect_timeout=CONNECT_TIMEOUT,  # type: ignore[arg-type]
                pending_size=PENDING_SIZE,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                token=cfg.token.get_secret_value() if cfg.token else None,
                user=cfg.user.get_secret_value() if cfg.user else None,
                password=cfg.password.get_secret_value() if cfg.password else None,
            )
    except Exception as exc:
        cause = nc.last_error if isinstance(exc, TimeoutError) and nc.last_error else exc
        await close(nc)
        raise NatsConnectError(
            f"nats {kind} {component!r}: cannot connect to {safe_urls(cfg.url)}: "
            f"{type(cause).__name__}: {cause or 'no detail'}; check `url` (and `token` or "
            "`user`/`password`) and that nats-server runs with JetStream (-js)"
        ) from exc
    return nc


async def close(nc: Client) -> None:
    """Close after flushing what is buffered (acks), bounded; never raises."""
    if nc.is_closed:
        return
    # Closing anyway: a failing flush or close leaves nothing else to do.
    with contextlib.suppress(Exception):
        if nc.is_connected:
            await nc.flush(timeout=2)
    with contextlib.suppress(Exception):
        await nc.close()


__all__ = ["Client", "NatsConnectError", "close", "connect", "nats", "safe_urls"]
