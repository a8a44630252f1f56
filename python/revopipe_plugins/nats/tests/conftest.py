from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from revopipe_plugins.nats.tests.server import NatsServer, require_binary


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(require_binary(), tmp_path / "nats-store")
    server.start()
    try:
        yield server
    finally:
        server.stop()
