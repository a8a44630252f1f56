"""`host:port` listen addresses, one grammar for every server and socket revopipe opens
(the control API, the http and statsd sources, the prometheus sink).

    127.0.0.1:8686    [::1]:8686    localhost:0    0.0.0.0:9464    :9464 (every interface)

Port 0 asks the OS for a free port. `localhost` is read as 127.0.0.1: a name resolving to
two addresses would get two different free ports for port 0.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator

_ADDRESS = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\]:(?P<p6>\d+)|(?P<host>[^\s:\[\]]*):(?P<port>\d+)")

ANY_HOST = ""
"""The host of ':9464': every interface."""


def parse_address(text: str, example: str = "127.0.0.1:8686") -> tuple[str, int]:
    """(host, port) from 'host:port'; host is ANY_HOST for ':port'. ValueError naming the
    expected form (with `example`'s port) otherwise."""
    m = _ADDRESS.fullmatch(text.strip())
    if m is None:
        p = example.rpartition(":")[2]
        raise ValueError(
            f"expected 'host:port' such as {example!r}, '[::1]:{p}' or ':{p}' "
            f"(every interface), got {text!r}"
        )
    host = m.group("v6") or m.group("host") or ANY_HOST
    port = int(m.group("p6") or m.group("port"))
    if port > 65535:
        raise ValueError(f"port {port} in {text!r} is out of range; use 0-65535 (0 = any free)")
    if m.group("v6"):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in {text!r} is not an IPv6 address") from None
    return ("127.0.0.1" if host.lower() == "localhost" else host), port


def format_address(host: str, port: int) -> str:
    """The inverse of parse_address: IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPs; False for host names, which may resolve
    anywhere, and for every-interface binds."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check(text: str) -> str:
    parse_address(text)
    return text


Address = Annotated[str, AfterValidator(_check)]
"""A config field holding a `host:port` (validated, kept as written)."""
