"""Shared by tests/ and the plugins' own tests/ folders."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
