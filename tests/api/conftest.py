"""Fixtures for the API tests: `daemon`, a started `Daemon` (see support.py), and
`make_daemon`, which builds and starts one with other settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anthropic
import pytest

from tests.api.support import Daemon

MakeDaemon = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def make_daemon(
    redis_url: str, key_prefix: str, anthropic_client: anthropic.AsyncAnthropic
) -> AsyncIterator[MakeDaemon]:
    started: list[Daemon] = []

    async def make(**settings: Any) -> Daemon:
        settings.setdefault("redis_url", redis_url)
        daemon = Daemon(key_prefix=key_prefix, anthropic_client=anthropic_client, **settings)
        await daemon.start()
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        await daemon.close()


@pytest.fixture
async def daemon(make_daemon: MakeDaemon) -> Daemon:
    return await make_daemon()
