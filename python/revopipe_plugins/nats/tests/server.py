"""A real nats-server for the tests: free loopback port, JetStream on, its own store dir;
stop()/start() keep the port and the store, so a restart looks like a real one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import api

CANDIDATES = ("nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server")


def nats_server_binary() -> str | None:
    for c in CANDIDATES:
        found = shutil.which(c)
        if found:
            return found
    return None


def require_binary() -> str:
    found = nats_server_binary()
    if found is None:
        reason = "nats-server is not installed (apt-get install nats-server, or put it on PATH)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    def __init__(self, binary: str, store: Path) -> None:
        self.binary = binary
        self.store = store
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = store.parent / f"nats-server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "-js",
                    "-sd",
                    str(self.store),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self.proc.returncode}: "
                    f"{self.log.read_text()[-2000:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on {self.port} within 15s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@asynccontextmanager
async def client(url: str) -> AsyncIterator[Client]:
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=5)
    try:
        yield nc
    finally:
        await nc.close()


async def consumer_info(url: str, stream: str, durable: str) -> api.ConsumerInfo:
    async with client(url) as nc:
        return await nc.jetstream().consumer_info(stream, durable)


async def stream_messages(url: str, stream: str) -> int:
    async with client(url) as nc:
        info = await nc.jetstream().stream_info(stream)
        return info.state.messages
